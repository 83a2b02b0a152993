using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Models;
using Microsoft.ML.Bone.Persistence;
using Microsoft.ML.Bone.Tasks;
using Microsoft.ML.Bone.Tokenization;

namespace Microsoft.ML.Bone;

/// <summary>A trained causal LM: the fine-tuned model, its tokenizer and its generation settings.</summary>
internal sealed class CausalLMModel : IDisposable
{
    public CausalLMModel(FineTunedModel model)
    {
        Trained = model;
        Settings = model.Record.CausalLM ?? throw new InvalidDataException("model zip: this is not a causal language model.");
        string config = model.Record.Base.Embedded ? "the model zip's embedded config.json" : ConfigOf(model.Record.Base.Path);
        Tokenizer = model.Use((m, _) => OpenTokenizer((ICausalLanguageModel)m, model.Tokenizer, config));
    }

    public FineTunedModel Trained { get; }
    public ICausalTokenizer Tokenizer { get; }
    public CausalLMSettings Settings { get; }
    public SavedModel Record => Trained.Record;

    /// <summary>Where warnings while generating go (the MLContext's log, for models made by a trainer or loader).</summary>
    public Action<string> Warn { get; set; } = _ => { };

    /// <summary>Where a checkpoint states its vocabulary: config.json, or a single-file checkpoint's own header.</summary>
    public static string ConfigOf(string modelPath) => File.Exists(modelPath) ? modelPath : Path.Combine(modelPath, "config.json");

    /// <summary>
    /// The tokenizer for <paramref name="model"/>, checked against its vocabulary (<paramref name="modelConfig"/> names
    /// where that comes from), so that no id can index past the embeddings.
    /// </summary>
    public static ICausalTokenizer OpenTokenizer(ICausalLanguageModel model, TokenizerFiles files, string modelConfig)
    {
        int? eos = model.EosTokenIds.Count > 0 ? model.EosTokenIds[0] : null;
        ICausalTokenizer tokenizer = CausalTokenizers.Load(files, model.BosTokenId, eos);
        string source = files.Files.Count == 1 ? files.Describe(files.Files.Keys.Single()) : $"{files.Source} ({string.Join(", ", files.Files.Keys.Order(StringComparer.Ordinal))})";
        if (tokenizer.IdLimit > model.VocabSize)
            throw new InvalidDataException($"The tokenizer {source} produces ids up to {tokenizer.IdLimit - 1}, but {modelConfig} gives vocab_size {model.VocabSize}: the tokenizer and the model do not belong together (set TokenizerPath to the model's own tokenizer).");
        foreach (var (name, id) in new[] { ("EOS", tokenizer.EosId), ("padding", tokenizer.PadId), ("BOS", tokenizer.BosId ?? 0) })
            if (id < 0 || id >= model.VocabSize)
                throw new InvalidDataException($"The tokenizer {source} has {name} id {id}, outside the vocabulary of {model.VocabSize} that {modelConfig} gives (vocab_size): the tokenizer and the model do not belong together.");
        return tokenizer;
    }

    /// <summary>Prompt/response token ids for training and evaluation (the prompt templated, the response ending with EOS).</summary>
    public static PromptResponse Encode(ICausalTokenizer tokenizer, CausalLMSettings settings, string prompt, string response) =>
        new(tokenizer.Encode(settings.Format(prompt), addBos: true), [.. tokenizer.Encode(response, addBos: false), tokenizer.EosId]);

    public PromptResponse Encode(string prompt, string response) => Encode(Tokenizer, Settings, prompt, response);

    /// <summary>Completions for a batch of prompts, cut at the first stop string.</summary>
    public string[] Complete(IReadOnlyList<string> prompts, Action<int, string>? onToken = null)
    {
        int[][] ids = prompts.Select(p => Tokenizer.Encode(Settings.Format(p), addBos: true)).ToArray();
        var generated = Trained.Use((m, _) =>
        {
            var model = (ICausalLanguageModel)m;
            var eos = new HashSet<int>(model.EosTokenIds) { Tokenizer.EosId };
            GenerationOptions generation = FitToPositions(ids, model.MaxSequenceLength);
            return TextGeneration.Generate(model, ids, generation, eos, Tokenizer.PadId,
                Settings.StopStrings.Length == 0 ? null : (_, tokens) => Settings.StopStrings.Any(Tokenizer.Decode(tokens).Contains),
                onToken is null ? null : (row, token) => onToken(row, Tokenizer.Decode([token])));
        });
        return generated.Select(g => CutAtStop(Tokenizer.Decode(g))).ToArray();
    }

    /// <summary>
    /// Keeps prompt and completion within the model's positions: prompts longer than the positions left after the
    /// tokens to generate (at least half the positions) keep their BOS and their end, as a chat keeps its latest turns,
    /// and the tokens to generate shrink to what still fits. Either is a warning, never gigabytes of attention.
    /// </summary>
    private GenerationOptions FitToPositions(int[][] ids, int positions)
    {
        GenerationOptions generation = Settings.Generation;
        if (positions == int.MaxValue || ids.Length == 0) return generation;   // a recurrent model has no position limit
        int promptBudget = Math.Max(positions / 2, positions - generation.MaxNewTokens);
        int cut = 0;
        for (int i = 0; i < ids.Length; i++)
            if (ids[i].Length > promptBudget)
            {
                ids[i] = [ids[i][0], .. ids[i][^(promptBudget - 1)..]];
                cut++;
            }
        if (cut > 0) Warn($"{cut} of {ids.Length} prompts are longer than the {promptBudget} tokens that fit before the {generation.MaxNewTokens} to generate in the model's {positions} positions; their beginning (after BOS) was cut.");
        int fits = positions - ids.Max(p => p.Length);
        if (generation.MaxNewTokens > fits)
        {
            Warn($"at most {fits} tokens are generated (not MaxNewTokens = {generation.MaxNewTokens}): the prompt and the completion must fit in the model's {positions} positions.");
            generation = generation with { MaxNewTokens = fits };
        }
        return generation;
    }

    private string CutAtStop(string text)
    {
        int cut = Settings.StopStrings.Select(s => text.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(text.Length).Min();
        return text[..cut];
    }

    public void Save(ModelSaveContext ctx, MlNetInternals.ModelVersion version) => Trained.Save(ctx, version);

    /// <summary>Writes a Hugging Face model directory (config, merged weights, tokenizer files) that needs no adapter code.</summary>
    public void ExportMerged(string directory) => Trained.ExportMerged(directory, null);

    /// <summary>Mean response loss and token count over <paramref name="examples"/>.</summary>
    public (double Loss, long Tokens) Evaluate(IReadOnlyList<PromptResponse> examples) =>
        Trained.Use((m, _) => CausalLanguageModeling.Evaluate((ICausalLanguageModel)m, examples, Tokenizer.PadId, Record.MaxSequenceLength, Record.BatchSize));

    public static CausalLMModel Load(object ctx, MlNetInternals.ModelVersion version) =>
        new(FineTunedModel.Load(ctx, version, (_, path, options) => ModelRegistry.LoadCausalLM(path, options)));

    public void Dispose() => Trained.Dispose();
}
