using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Adapters.Lora;
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

    private readonly SharedBaseModel _base;
    private readonly string? _adapterName;
    private int _disposed;

    /// <summary>A model that owns its base (a freshly fitted one).</summary>
    public FineTunedModel(IPretrainedModel model, AdapterModel? adapted, TokenizerFiles tokenizer, SavedModel record)
        : this(SharedBaseModel.Private(model, adapted), adapted?.ActiveAdapter, tokenizer, record)
    {
    }

    private FineTunedModel(SharedBaseModel sharedBase, string? adapterName, TokenizerFiles tokenizer, SavedModel record)
    {
        _base = sharedBase;
        _adapterName = adapterName;
        Tokenizer = tokenizer;
        Record = record;
    }

    public TokenizerFiles Tokenizer { get; }
    public SavedModel Record { get; }

    /// <summary>The base this model runs on (shared with other models loaded from zips of the same base).</summary>
    internal SharedBaseModel Base => _base;

    /// <summary>
    /// Runs <paramref name="body"/> with the model and its adapter (null for full fine-tuning) made active, under
    /// the base's lock. Every use of the model goes through here, as other models may share its base.
    /// </summary>
    public T Use<T>(Func<IPretrainedModel, AdapterModel?, T> body)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        Nn.TorchThreads.Ensure(Record.Threads);
        return _base.Use(_adapterName, body);
    }

    /// <inheritdoc cref="Use{T}"/>
    public void Use(Action<IPretrainedModel, AdapterModel?> body) => Use<object?>((m, a) => { body(m, a); return null; });

    /// <summary>
    /// Writes the tokenizer, the adapter and (when embedded) the base into the model's zip directory, then the record
    /// with each of those entries' size and digest.
    /// </summary>
    public void Save(ModelSaveContext ctx, MlNetInternals.ModelVersion version) => Use((model, adapted) =>
    {
        BinaryWriter writer = MlNetInternals.BeginSave(ctx, version);
        var entries = new ZipEntryWriter(ctx);
        var tokenizerFiles = Tokenizer.Files.OrderBy(f => f.Key, StringComparer.Ordinal).ToList();
        foreach (var (name, bytes) in tokenizerFiles) entries.WriteBytes(TokenizerEntryPrefix + name, bytes);
        if (Record.Base.Embedded)
        {
            entries.WriteBytes(BaseConfigEntry, System.Text.Encoding.UTF8.GetBytes(model.ConfigJson()));
            entries.WriteTensors(BaseWeightsEntry, ModuleWeights.StateDict(model.Module));
        }
        if (adapted is not null) entries.WriteTensors(AdapterEntry, AdaptedModelState.Collect(adapted));
        writer.Write((Record with { Entries = entries.Written }).ToJson());
        writer.Write(tokenizerFiles.Count);
        foreach (var (name, _) in tokenizerFiles) writer.Write(name);
    });

    /// <summary>
    /// Rebuilds a model saved by <see cref="Save"/>. <paramref name="loadBase"/> loads a checkpoint folder of the
    /// task's kind; the base comes from the zip, or from its recorded (or overridden) location after its identity is checked.
    /// </summary>
    public static FineTunedModel Load(object ctx, MlNetInternals.ModelVersion version, Func<SavedModel, string, ModelLoadOptions, IPretrainedModel> loadBase)
    {
        BinaryReader reader = MlNetInternals.BeginLoad(ctx, version);
        SavedModel record = SavedModel.FromJson(ReadModelStream(reader, r => r.ReadString()), "model zip");
        var entries = new ZipEntryReader(ctx, record.Entries);
        int count = ReadModelStream(reader, r => r.ReadInt32());
        if (count is < 0 or > 64) throw new InvalidDataException($"model zip: {count} tokenizer files is not a valid count.");
        var files = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        for (int i = 0; i < count; i++)
        {
            string file = ReadModelStream(reader, r => r.ReadString());
            if (!files.TryAdd(file, entries.ReadBytes(TokenizerEntryPrefix + file)))
                throw new InvalidDataException($"model zip: the tokenizer file '{file}' is listed twice.");
        }
        if (record.Entries.Keys.Count(k => k.StartsWith(TokenizerEntryPrefix, StringComparison.Ordinal)) != files.Count)
            throw new InvalidDataException("model zip: the tokenizer files listed differ from the entries recorded.");
        var tokenizer = new TokenizerFiles(files, "model zip");
        var load = new ModelLoadOptions { DType = record.Base.DType.ToScalarType() };

        AdapterConfig? config = record.AdapterConfigJson is null ? null : PeftAdapterConfig.Parse(record.AdapterConfigJson, "model zip").Config;
        // A base is shared when it is the files on disk unchanged: not embedded (full fine-tuning embeds its trained
        // weights) and not rewritten by the adapter (PiSSA / OLoRA keep a residual base).
        bool shareable = !record.Base.Embedded && config is not null && config is not LoraConfig { MutatesBaseWeights: true };
        if (!shareable)
        {
            IPretrainedModel model = LoadPrivateBase(entries, record, loadBase, load, out record);
            try
            {
                AdapterModel? adapted = AdaptedModelState.RestoreFromZip(entries, AdapterEntry, model.Module, record.AdapterConfigJson, baseIsResidual: record.Base.Embedded);
                model.Module.eval();
                return new FineTunedModel(model, adapted, tokenizer, record);
            }
            catch
            {
                model.Dispose();
                throw;
            }
        }

        string path = Path.GetFullPath(BoneLoaders.BaseModelPath ?? record.Base.Path);
        record = record with { Base = record.Base with { Path = path } };
        SharedBaseModel shared = SharedBaseModel.Acquire(SharingKey(record), () => LoadCheckedBase(record, path, loadBase, load));
        string name = SharedBaseModel.NewAdapterName();
        try
        {
            Dictionary<string, TorchSharp.torch.Tensor> tensors = entries.ReadTensors(AdapterEntry);
            try
            {
                shared.AddAdapter(existing =>
                {
                    AdapterModel adapted;
                    if (existing is null) adapted = AdapterModel.Inject(shared.Model.Module, config!, name: name);
                    else
                    {
                        existing.AddAdapter(name, config!);
                        adapted = existing;
                    }
                    try { adapted.LoadPeftStateDict(tensors, AdapterEntry, name); }
                    catch
                    {
                        if (existing is not null) existing.DeleteAdapter(name);
                        throw;
                    }
                    shared.Model.Module.eval();
                    return adapted;
                });
            }
            finally { foreach (var t in tensors.Values) t.Dispose(); }
        }
        catch
        {
            shared.Release(null);
            throw;
        }
        return new FineTunedModel(shared, name, tokenizer, record);
    }

    // The model stream ends early or holds garbage only when the zip is damaged: say so, not EndOfStreamException.
    private static T ReadModelStream<T>(BinaryReader reader, Func<BinaryReader, T> read)
    {
        try { return read(reader); }
        catch (Exception e) when (e is EndOfStreamException or FormatException or IOException)
        {
            throw new InvalidDataException($"model zip: the model's record is cut short or damaged ({e.Message}).", e);
        }
    }

    // What makes two zips' bases interchangeable: the same files (by content), the same precision and the same head.
    private static string SharingKey(SavedModel record) => string.Join("|",
        record.Base.Architecture, record.Base.Path, record.Base.DType, record.TextClassification is { } tc ? $"labels={(tc.IsRegression ? 1 : tc.LabelNames!.Length)}" : "causal",
        string.Join(",", record.Base.Files.OrderBy(f => f.Key, StringComparer.Ordinal).Select(f => $"{f.Key}:{f.Value.Sha256}")));

    private static IPretrainedModel LoadCheckedBase(SavedModel record, string path, Func<SavedModel, string, ModelLoadOptions, IPretrainedModel> loadBase, ModelLoadOptions load)
    {
        BaseModelIdentity.CheckSizes(path, record.Base.Files);
        var fingerprint = new WeightFingerprint();
        IPretrainedModel model = loadBase(record, path, load with { Fingerprint = fingerprint });
        try { BaseModelIdentity.CheckDigests(path, record.Base.Files, fingerprint); }
        catch { model.Dispose(); throw; }
        model.Module.eval();
        return model;
    }

    private static IPretrainedModel LoadPrivateBase(ZipEntryReader entries, SavedModel record, Func<SavedModel, string, ModelLoadOptions, IPretrainedModel> loadBase, ModelLoadOptions load, out SavedModel updated)
    {
        updated = record;
        if (record.Base.Embedded)
        {
            string temp = Directory.CreateDirectory(TempPaths.NewScratchPath("embedded-base-")).FullName;
            try
            {
                entries.CopyToFile(BaseConfigEntry, Path.Combine(temp, "config.json"));
                entries.CopyToFile(BaseWeightsEntry, Path.Combine(temp, SafetensorsCheckpoint.SingleFileName));
                return loadBase(record, temp, load);
            }
            finally { Directory.Delete(temp, recursive: true); }
        }
        string path = Path.GetFullPath(BoneLoaders.BaseModelPath ?? record.Base.Path);
        updated = record with { Base = record.Base with { Path = path } };
        return LoadCheckedBase(updated, path, loadBase, load);
    }

    /// <summary>
    /// Writes a Hugging Face model directory with the adapter merged into the weights (checked for NaN / infinity),
    /// the tokenizer's files, and for classifiers <paramref name="labelNames"/> as id2label. The merged values are
    /// computed tensor by tensor while writing; the model itself is not changed.
    /// </summary>
    public void ExportMerged(string directory, IReadOnlyList<string>? labelNames)
    {
        if (directory.EndsWith(".pth", StringComparison.OrdinalIgnoreCase))
        {
            // RWKV users' own format: one BlinkDL .pth (no tokenizer files; RWKV tools bring their own).
            Use((model, adapted) =>
            {
                if (model is not Models.Rwkv6.Rwkv6ForCausalLM rwkv) throw new ArgumentException($"{directory}: only RWKV-6 models export to a .pth; give a directory for a Hugging Face checkpoint.");
                Models.Rwkv6.Rwkv6Checkpoint.SavePth(rwkv, directory, transform: adapted?.MergedWeightTransform(safe: true));
            });
            return;
        }
        // Written into a temporary sibling folder and renamed into place: a kill leaves no half-exported model.
        AtomicDirectory.Write(directory, temp =>
        {
            Use((model, adapted) =>
            {
                WeightTransform? merge = adapted?.MergedWeightTransform(safe: true);
                if (model is ISequenceClassifier classifier) classifier.SaveConfigAndWeights(temp, labelNames, merge);
                else model.SaveConfigAndWeights(temp, merge);
            });
            foreach (var (file, bytes) in Tokenizer.Files) AtomicFile.Write(Path.Combine(temp, file), s => s.Write(bytes));
        });
    }

    /// <summary>Writes the adapter as a PEFT adapter directory (MISS for the Bone family, LORA for the LoRA family).</summary>
    public void ExportPeft(string directory, string taskType) => Use((_, adapted) =>
    {
        if (adapted is null) throw new InvalidOperationException("This model was fully fine-tuned; it has no adapter to export (use ExportMergedModel).");
        PeftAdapterDirectory.Save(adapted, directory, Record.Base.Path, taskType);
    });

    /// <summary>Trainable and total parameters of the adapter, or null for full fine-tuning.</summary>
    public AdapterParameterSummary? ParameterSummary() => Use((_, adapted) => adapted?.Summary());

    /// <summary>Releases this model's hold on its base (and its adapter); the base goes when its last model does.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0) _base.Release(_adapterName);
    }
}
