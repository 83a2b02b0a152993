using Microsoft.ML.Bone.Evaluation;
using Microsoft.ML.Bone.Tasks;

namespace Microsoft.ML.Bone;

public sealed partial class BoneCatalog
{
    /// <summary>Instruction-tunes a causal LM checkpoint (LLaMA, Mistral, Qwen2, llama2.c) on <c>Prompt</c> / <c>Response</c> columns.</summary>
    /// <param name="modelPath">Hugging Face LLaMA directory (config.json, safetensors, tokenizer.model) or llama2.c .bin.</param>
    /// <param name="adapter">Adapter method; Bone by default.</param>
    /// <param name="rank">Block size or rank; 0 = the adapter's default.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="batchSize">Examples per batch.</param>
    /// <param name="promptColumnName">Prompt text column.</param>
    /// <param name="responseColumnName">Response text column.</param>
    /// <example>Instruction tuning on GSM8K: <c>samples/CausalLM/Program.cs</c>.</example>
    public BoneCausalLMTrainer CausalLM(string modelPath, AdapterKind adapter = AdapterKind.Bone, int rank = 0, int maxEpochs = 3, int batchSize = 4,
        string promptColumnName = "Prompt", string responseColumnName = "Response") =>
        CausalLM(new BoneCausalLMOptions
        {
            ModelPath = modelPath, Adapter = adapter, Rank = rank, MaxEpochs = maxEpochs, BatchSize = batchSize,
            PromptColumnName = promptColumnName, ResponseColumnName = responseColumnName,
        });

    /// <summary>Instruction-tunes a causal LM checkpoint as <paramref name="options"/> say.</summary>
    /// <example>Instruction tuning on GSM8K: <c>samples/CausalLM/Program.cs</c>.</example>
    public BoneCausalLMTrainer CausalLM(BoneCausalLMOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new BoneCausalLMTrainer(Context, options);
    }

    /// <summary>
    /// <see cref="EvaluateCausalLM(BoneCausalLMTransformer, IDataView, string?)"/> for data scored by a Bone causal LM
    /// (<c>model.Transform(data)</c>): the model that produced the completions also scores the responses.
    /// </summary>
    public CausalLMEvaluation EvaluateCausalLM(IDataView scored, string? completionColumnName = null)
    {
        ArgumentNullException.ThrowIfNull(scored);
        // The model is found through its completion column, wherever later pipeline steps put it.
        var found = LiveCausalLMs.In(scored.Schema);
        if (completionColumnName is not null) found = found.Where(f => f.Column == completionColumnName).ToList();
        return found.Select(f => f.Model).Distinct().ToList() switch
        {
            [var model] => Evaluate(model, scored, completionColumnName ?? found[0].Column),
            [] => throw new ArgumentException($"No column of the data was made by a BoneCausalLMTransformer (columns: {string.Join(", ", scored.Schema.Where(c => !c.IsHidden).Select(c => c.Name))}); use EvaluateCausalLM(model, data).", nameof(scored)),
            _ => throw new ArgumentException($"Columns of several causal LMs are in the data ({string.Join(", ", found.Select(f => f.Column))}); name one with completionColumnName.", nameof(completionColumnName)),
        };
    }

    /// <summary>
    /// Mean loss and perplexity of the <c>Response</c> column given <c>Prompt</c> under <paramref name="model"/>, and —
    /// when <paramref name="data"/> (or the model's output) has a completion column — the exact-match accuracy of the
    /// final number, as GSM8K is scored.
    /// </summary>
    public CausalLMEvaluation EvaluateCausalLM(BoneCausalLMTransformer model, IDataView data, string? completionColumnName = null) =>
        Evaluate(model.Model, data, completionColumnName);

    private static CausalLMEvaluation Evaluate(CausalLMModel model, IDataView data, string? completionColumnName)
    {
        var spec = model.Settings;
        var pairs = CausalLMData.Read(data, spec.Prompt, spec.Response, "evaluation data", CancellationToken.None);
        var examples = pairs.Select(p => model.Encode(p.Prompt, p.Response)).ToList();
        var (loss, tokens) = model.Evaluate(examples);
        double? accuracy = null;
        string completion = completionColumnName ?? spec.Completion;
        if (data.Schema.GetColumnOrNull(completion) is { Type: TextDataViewType } column)
        {
            var completions = new List<string>();
            using var cursor = data.GetRowCursor([column]);
            var get = cursor.GetGetter<ReadOnlyMemory<char>>(column);
            ReadOnlyMemory<char> text = default;
            while (cursor.MoveNext()) { get(ref text); completions.Add(text.ToString()); }
            accuracy = pairs.Count == 0 ? 0 : pairs.Where((p, i) => MathAnswers.ExactMatch(completions[i], p.Response)).Count() / (double)pairs.Count;
        }
        return new CausalLMEvaluation(pairs.Count, loss, Math.Exp(loss), tokens, accuracy);
    }
}
