using Microsoft.ML.Bone.Data;
using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Persistence;
using Microsoft.ML.Bone.Training;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Bone;

/// <summary>
/// An instruction-tuned LLaMA in an ML.NET pipeline: it appends a <c>Completion</c> text column generated for the
/// <c>Prompt</c> column (prompt template, KV-cached batched generation with the options it was trained with).
/// </summary>
public sealed class BoneCausalLMTransformer : ScoringTransformer
{
    internal const string LoaderSignature = "BoneCausalLMXf";
    // 0x00010001: first format (settings per task, LLaMA only, base identified by whole-file SHA-256).
    // 0x00020001: one saved-model record for every task and architecture, tokenizer files inside the zip, base
    //             identified by file sizes and the content digest taken while it loads.
    // 0x00020002: every entry's size and SHA-256 in the record (zip CRCs are not checked on read); strict record.
    internal static readonly MlNetInternals.ModelVersion Version = new("BONECSLM", 0x00020002, 0x00020002, 0x00020002, LoaderSignature);

    private readonly CausalLMModel _model;

    internal BoneCausalLMTransformer(CausalLMModel model, IReadOnlyList<TrainingProgress> history, Action<int, string>? onToken = null)
        : base(new CausalLMScorer(model, onToken))
    {
        _model = model;
        TrainingHistory = history;
    }

    internal CausalLMModel Model => _model;

    /// <summary>Progress reports of the training run (empty for a loaded model).</summary>
    public IReadOnlyList<TrainingProgress> TrainingHistory { get; }

    /// <summary>Trainable versus total parameters; null for full fine-tuning.</summary>
    public AdapterParameterSummary? ParameterSummary => _model.Trained.ParameterSummary();

    /// <summary>Completions for <paramref name="prompts"/>, generated in one batch.</summary>
    public IReadOnlyList<string> Complete(IReadOnlyList<string> prompts) => _model.Complete(prompts);

    /// <summary>
    /// Writes a Hugging Face model directory (config.json, merged model.safetensors, tokenizer files) that any engine
    /// reading Hugging Face checkpoints serves without adapter code; for RWKV-6, a path ending in <c>.pth</c> writes a
    /// BlinkDL <c>.pth</c> instead (RWKV-LM / ChatRWKV / RWKV-PEFT names and shapes).
    /// </summary>
    public void ExportMergedModel(string directory) => _model.ExportMerged(directory);

    /// <summary>Writes the adapter as a PEFT adapter directory (task CAUSAL_LM).</summary>
    public void ExportPeftAdapter(string directory)
    {
        _model.Trained.ExportPeft(directory, "CAUSAL_LM");
    }

    private protected override void Save(ModelSaveContext ctx) => _model.Save(ctx, Version);

    // ML.NET's model loader calls this with its (internal) ModelLoadContext; see Persistence/BoneLoaders.cs.
    private static BoneCausalLMTransformer Create(IHostEnvironment env, object ctx)
    {
        CausalLMModel model = CausalLMModel.Load(ctx, Version);
        model.Warn = HostWarnings.To(env, nameof(BoneCausalLMTransformer));
        return new(model, []);
    }

    /// <inheritdoc/>
    public override void Dispose() => _model.Dispose();

    private protected override void CheckInput(DataViewSchema schema)
    {
        string prompt = _model.Settings.Prompt;
        var column = schema.GetColumnOrNull(prompt) ?? throw new ArgumentOutOfRangeException(prompt, $"Column '{prompt}' not found in the input data.");
        if (column.Type is not TextDataViewType) throw new ArgumentException($"Column '{prompt}' must be text (String), but it is {column.Type}.", prompt);
    }
}
