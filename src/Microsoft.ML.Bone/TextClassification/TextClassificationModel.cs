using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Data;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Models.Roberta;
using Microsoft.ML.Bone.Persistence;
using Microsoft.ML.Bone.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone;

/// <summary>A trained text classifier: the RoBERTa model with its adapter, the tokenizer and the settings that saved models keep.</summary>
internal sealed class TextClassificationModel : IDisposable
{
    private const string AdapterEntry = "Adapter.safetensors";
    private const string BaseWeightsEntry = "BaseWeights.safetensors";
    private static readonly (string Entry, string File)[] BaseFiles = [("BaseConfig.json", "config.json"), ("BaseVocab.json", "vocab.json"), ("BaseMerges.txt", "merges.txt")];

    public TextClassificationModel(RobertaForSequenceClassification model, string tokenizerDirectory, AdapterModel? adapted, TextClassificationSpec spec)
    {
        Model = model;
        Tokenizer = RobertaTokenizer.FromDirectory(tokenizerDirectory);
        // Kept in memory so that saving and exporting work even when the base directory is gone.
        TokenizerFiles = TokenizerFileNames.ToDictionary(f => f, f => File.ReadAllBytes(Path.Combine(tokenizerDirectory, f)));
        Adapted = adapted;
        Spec = spec;
        Labels = spec.IsRegression ? null : new LabelValues(spec.LabelNames!, spec.LabelValueType!);
    }

    private static readonly string[] TokenizerFileNames = ["vocab.json", "merges.txt"];

    /// <summary>The tokenizer's files by name.</summary>
    public IReadOnlyDictionary<string, byte[]> TokenizerFiles { get; }

    public RobertaForSequenceClassification Model { get; }
    public RobertaTokenizer Tokenizer { get; }
    public AdapterModel? Adapted { get; }
    public TextClassificationSpec Spec { get; }
    public LabelValues? Labels { get; }

    /// <summary>Writes the settings, the trained tensors and (when embedded) the base model into the zip entry.</summary>
    public void Save(ModelSaveContext ctx, MlNetInternals.ModelVersion version)
    {
        BinaryWriter writer = MlNetInternals.BeginSave(ctx, version);
        writer.Write(Spec.ToJson());
        if (Spec.Embedded)
        {
            string temp = Directory.CreateTempSubdirectory("bone-save-").FullName;
            try
            {
                ModuleWeights.Save(Model, Path.Combine(temp, "weights.safetensors"));
                ZipTensorsSaveBase(ctx, temp);
            }
            finally { Directory.Delete(temp, recursive: true); }
        }
        if (Adapted is not null) ZipTensors.Save(ctx, AdapterEntry, AdaptedModelState.Collect(Adapted));
    }

    private void ZipTensorsSaveBase(ModelSaveContext ctx, string temp)
    {
        ZipTensors.SaveFile(ctx, BaseWeightsEntry, Path.Combine(temp, "weights.safetensors"));
        File.WriteAllText(Path.Combine(temp, "config.json"), Model.Config.ToJson());
        foreach (var (file, bytes) in TokenizerFiles) File.WriteAllBytes(Path.Combine(temp, file), bytes);
        foreach (var (entry, file) in BaseFiles) ZipTensors.SaveFile(ctx, entry, Path.Combine(temp, file));
    }

    /// <summary>Rebuilds a model saved by <see cref="Save"/>; the base comes from the zip or from its (verified) directory.</summary>
    public static TextClassificationModel Load(object ctx, MlNetInternals.ModelVersion version)
    {
        BinaryReader reader = MlNetInternals.BeginLoad(ctx, version);
        TextClassificationSpec spec = TextClassificationSpec.FromJson(reader.ReadString());
        using var source = SavedBase.Open(ctx, spec.Embedded, spec.BaseDirectory, spec.BaseSha256,
            [.. BaseFiles, (BaseWeightsEntry, SafetensorsCheckpoint.SingleFileName)]);
        int labels = spec.IsRegression ? 1 : spec.LabelNames!.Length;
        var model = RobertaForSequenceClassification.FromPretrained(source.Directory, labels, spec.DType.ToScalarType());
        AdapterModel? adapted = AdaptedModelState.RestoreFromZip(ctx, AdapterEntry, model, spec.AdapterConfigJson, baseIsResidual: spec.Embedded);
        model.eval();
        return new TextClassificationModel(model, source.Directory, adapted, spec with { BaseDirectory = spec.Embedded ? spec.BaseDirectory : source.Directory });
    }

    /// <summary>Writes a Hugging Face model directory with the adapter merged into the weights.</summary>
    public void ExportMerged(string directory)
    {
        if (Directory.Exists(directory) && Directory.EnumerateFileSystemEntries(directory).Any())
            throw new IOException($"{directory}: output directory exists and is not empty.");
        Adapted?.Merge(safe: true);
        try
        {
            Model.SaveConfigAndWeights(directory);
            foreach (var (file, bytes) in TokenizerFiles) File.WriteAllBytes(Path.Combine(directory, file), bytes);
        }
        finally { Adapted?.Unmerge(); }
    }

    /// <summary>Writes the adapter (and the trained head) as a PEFT adapter directory.</summary>
    public void ExportPeft(string directory)
    {
        if (Adapted is null) throw new InvalidOperationException("This model was fully fine-tuned; it has no adapter to export (use ExportMergedModel).");
        PeftAdapterDirectory.Save(Adapted, directory, Spec.BaseDirectory, "SEQ_CLS");
    }

    public void Dispose() => Model.Dispose();
}

internal static class BaseDTypeExtensions
{
    public static ScalarType ToScalarType(this BaseDType dtype) => dtype switch
    {
        BaseDType.BFloat16 => ScalarType.BFloat16,
        BaseDType.Float16 => ScalarType.Float16,
        _ => ScalarType.Float32,
    };
}
