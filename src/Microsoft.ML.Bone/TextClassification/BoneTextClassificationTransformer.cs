using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Persistence;
using Microsoft.ML.Bone.Training;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Bone;

/// <summary>
/// A fine-tuned RoBERTa text classifier (or regressor) in an ML.NET pipeline. It appends <c>Score</c> (class
/// probabilities, with slot names) and <c>PredictedLabel</c> (a key with the training label's key values), or for
/// regression a single <c>Score</c>. Scoring is lazy and batched; saved models keep the adapter and head inside the
/// zip and refer to the base checkpoint by path and SHA-256 (or embed it).
/// </summary>
public sealed class BoneTextClassificationTransformer : ScoringTransformer
{
    internal const string LoaderSignature = "BoneTextClassXf";
    // 0x00010001: first format (settings per task, base identified by whole-file SHA-256).
    // 0x00020001: one saved-model record for every task, tokenizer files inside the zip, base identified by file
    //             sizes and the content digest taken while it loads.
    // 0x00020002: every entry's size and SHA-256 in the record (zip CRCs are not checked on read); strict record.
    internal static readonly MlNetInternals.ModelVersion Version = new("BONETXCL", 0x00020002, 0x00020002, 0x00020002, LoaderSignature);

    private readonly TextClassificationModel _model;

    internal BoneTextClassificationTransformer(TextClassificationModel model, IReadOnlyList<TrainingProgress> history)
        : base(new TextClassificationScorer(model))
    {
        _model = model;
        TrainingHistory = history;
    }

    internal TextClassificationModel Model => _model;

    /// <summary>Progress reports of the training run (empty for a loaded model).</summary>
    public IReadOnlyList<TrainingProgress> TrainingHistory { get; }

    /// <summary>Trainable versus total parameters; null for full fine-tuning.</summary>
    public AdapterParameterSummary? ParameterSummary => _model.Trained.ParameterSummary();

    /// <summary>The adapter method used.</summary>
    public AdapterKind Adapter => _model.Record.Adapter;

    /// <summary>Class names in key order (null for regression).</summary>
    public IReadOnlyList<string>? ClassNames => _model.Settings.LabelNames;

    /// <summary>Writes a Hugging Face model directory (config, merged weights, tokenizer files) that needs no adapter code.</summary>
    public void ExportMergedModel(string directory) => _model.ExportMerged(directory);

    /// <summary>Writes the adapter and trained head as a PEFT adapter directory (adapter_config.json + adapter_model.safetensors).</summary>
    public void ExportPeftAdapter(string directory) => _model.ExportPeft(directory);

    private protected override void Save(ModelSaveContext ctx) => _model.Save(ctx, Version);

    // ML.NET's model loader calls this with its (internal) ModelLoadContext; see Persistence/BoneLoaders.cs.
    private static BoneTextClassificationTransformer Create(IHostEnvironment env, object ctx) => new(TextClassificationModel.Load(ctx, Version), []);

    /// <inheritdoc/>
    public override void Dispose() => _model.Dispose();

    private protected override void CheckInput(DataViewSchema schema) =>
        TextClassificationColumns.CheckText(schema, _model.Settings.Sentence1, _model.Settings.Sentence2, "input data");
}
