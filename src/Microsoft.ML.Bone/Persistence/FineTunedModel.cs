using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Models;
using Microsoft.ML.Bone.Tokenization;

namespace Microsoft.ML.Bone.Persistence;

/// <summary>
/// A fine-tuned model of any task: the base model, its adapter (null for full fine-tuning), the tokenizer's files and
/// the saved-model record. Saving and loading model zips happens here, the same way for every task: the record, the
/// adapter tensors, the tokenizer files, and the base either embedded or referenced by path and identity.
/// </summary>
internal sealed class FineTunedModel : IDisposable
{
    private const string AdapterEntry = "Adapter.safetensors";
    private const string BaseConfigEntry = "BaseConfig.json";
    private const string BaseWeightsEntry = "BaseWeights.safetensors";
    private const string TokenizerEntryPrefix = "Tokenizer.";

    public FineTunedModel(IPretrainedModel model, AdapterModel? adapted, TokenizerFiles tokenizer, SavedModel record)
    {
        Model = model;
        Adapted = adapted;
        Tokenizer = tokenizer;
        Record = record;
    }

    public IPretrainedModel Model { get; }
    public AdapterModel? Adapted { get; }
    public TokenizerFiles Tokenizer { get; }
    public SavedModel Record { get; }

    /// <summary>Writes the record, the tokenizer, the adapter and (when embedded) the base into the model's zip directory.</summary>
    public void Save(ModelSaveContext ctx, MlNetInternals.ModelVersion version)
    {
        BinaryWriter writer = MlNetInternals.BeginSave(ctx, version);
        writer.Write(Record.ToJson());
        writer.Write(Tokenizer.Files.Count);
        foreach (var (name, bytes) in Tokenizer.Files.OrderBy(f => f.Key, StringComparer.Ordinal))
        {
            writer.Write(name);
            MlNetInternals.SaveBinaryStream(ctx, TokenizerEntryPrefix + name, w => w.Write(bytes));
        }
        if (Record.Base.Embedded)
        {
            MlNetInternals.SaveBinaryStream(ctx, BaseConfigEntry, w => w.Write(System.Text.Encoding.UTF8.GetBytes(Model.ConfigJson())));
            ZipTensors.Save(ctx, BaseWeightsEntry, ModuleWeights.StateDict(Model.Module));
        }
        if (Adapted is not null) ZipTensors.Save(ctx, AdapterEntry, AdaptedModelState.Collect(Adapted));
    }

    /// <summary>
    /// Rebuilds a model saved by <see cref="Save"/>. <paramref name="loadBase"/> loads a checkpoint folder of the
    /// task's kind; the base comes from the zip, or from its recorded (or overridden) location after its identity is checked.
    /// </summary>
    public static FineTunedModel Load(object ctx, MlNetInternals.ModelVersion version, Func<SavedModel, string, ModelLoadOptions, IPretrainedModel> loadBase)
    {
        BinaryReader reader = MlNetInternals.BeginLoad(ctx, version);
        SavedModel record = SavedModel.FromJson(reader.ReadString(), "model zip");
        int count = reader.ReadInt32();
        if (count is < 0 or > 64) throw new InvalidDataException($"model zip: {count} tokenizer files is not a valid count.");
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        for (int i = 0; i < count; i++)
        {
            string name = reader.ReadString();
            files[name] = ZipTensors.LoadBytes(ctx, TokenizerEntryPrefix + name);
        }
        var tokenizer = new TokenizerFiles(files, "model zip");
        var load = new ModelLoadOptions { DType = record.Base.DType.ToScalarType() };

        IPretrainedModel model;
        if (record.Base.Embedded)
        {
            string temp = Directory.CreateTempSubdirectory("bone-load-").FullName;
            try
            {
                ZipTensors.LoadFile(ctx, BaseConfigEntry, Path.Combine(temp, "config.json"));
                ZipTensors.LoadFile(ctx, BaseWeightsEntry, Path.Combine(temp, SafetensorsCheckpoint.SingleFileName));
                model = loadBase(record, temp, load);
            }
            finally { Directory.Delete(temp, recursive: true); }
        }
        else
        {
            string path = BoneLoaders.BaseModelPath ?? record.Base.Path;
            BaseModelIdentity.CheckSizes(path, record.Base.Files);
            var fingerprint = new WeightFingerprint();
            model = loadBase(record, path, load with { Fingerprint = fingerprint });
            try { BaseModelIdentity.CheckDigests(path, record.Base.Files, fingerprint); }
            catch { model.Dispose(); throw; }
            record = record with { Base = record.Base with { Path = Path.GetFullPath(path) } };
        }
        try
        {
            AdapterModel? adapted = AdaptedModelState.RestoreFromZip(ctx, AdapterEntry, model.Module, record.AdapterConfigJson, baseIsResidual: record.Base.Embedded);
            model.Module.eval();
            return new FineTunedModel(model, adapted, tokenizer, record);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Writes a Hugging Face model directory with the adapter merged into the weights (checked for NaN / infinity first),
    /// the tokenizer's files, and for classifiers <paramref name="labelNames"/> as id2label. The adapter is unmerged again.
    /// </summary>
    public void ExportMerged(string directory, IReadOnlyList<string>? labelNames)
    {
        if (Directory.Exists(directory) && Directory.EnumerateFileSystemEntries(directory).Any())
            throw new IOException($"{directory}: output directory exists and is not empty.");
        Adapted?.Merge(safe: true);
        try
        {
            if (Model is ISequenceClassifier classifier) classifier.SaveConfigAndWeights(directory, labelNames);
            else Model.SaveConfigAndWeights(directory);
            foreach (var (file, bytes) in Tokenizer.Files) IO.AtomicFile.Write(Path.Combine(directory, file), s => s.Write(bytes));
        }
        finally { Adapted?.Unmerge(); }
    }

    public void Dispose() => Model.Dispose();
}
