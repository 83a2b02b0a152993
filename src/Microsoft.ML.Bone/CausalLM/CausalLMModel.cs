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
        Tokenizer = model.Use((m, _) => OpenTokenizer((ICausalLanguageModel)m, model.Tokenizer));
    }

    public FineTunedModel Trained { get; }
    public ICausalTokenizer Tokenizer { get; }
    public CausalLMSettings Settings { get; }
    public SavedModel Record => Trained.Record;

    /// <summary>The tokenizer for <paramref name="model"/>, checked against its vocabulary.</summary>
    public static ICausalTokenizer OpenTokenizer(ICausalLanguageModel model, TokenizerFiles files)
    {
        int? eos = model.EosTokenIds.Count > 0 ? model.EosTokenIds[0] : null;
        ICausalTokenizer tokenizer = CausalTokenizers.Load(files, model.BosTokenId, eos);
        if (tokenizer.IdLimit > model.VocabSize)
            throw new InvalidDataException($"The tokenizer in {files.Source} produces ids up to {tokenizer.IdLimit - 1}, but the model's config.json gives vocab_size {model.VocabSize}: the tokenizer and the model do not belong together (set TokenizerPath to the model's own tokenizer).");
        foreach (var (name, id) in new[] { ("EOS", tokenizer.EosId), ("padding", tokenizer.PadId), ("BOS", tokenizer.BosId ?? 0) })
            if (id < 0 || id >= model.VocabSize)
                throw new InvalidDataException($"{files.Source}: the tokenizer's {name} id {id} is outside the model's vocabulary of {model.VocabSize} (config.json vocab_size): the tokenizer and the model do not belong together.");
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
            return TextGeneration.Generate(model, ids, Settings.Generation, eos, Tokenizer.PadId,
                Settings.StopStrings.Length == 0 ? null : (_, tokens) => Settings.StopStrings.Any(Tokenizer.Decode(tokens).Contains),
                onToken is null ? null : (row, token) => onToken(row, Tokenizer.Decode([token])));
        });
        return generated.Select(g => CutAtStop(Tokenizer.Decode(g))).ToArray();
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
