using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Models;
using Microsoft.ML.Bone.Nn;
using Microsoft.ML.Bone.Persistence;
using Microsoft.ML.Bone.Tokenization;
using Microsoft.ML.Bone.Training;
using Microsoft.ML.Runtime;
using TorchSharp;
using TorchSharp.Modules;

namespace Microsoft.ML.Bone.FineTuning;

/// <summary>
/// The fitting skeleton every Bone trainer fills in, as ML.NET's TorchSharp trainers share one: options are checked
/// when the estimator is created; <see cref="Fit"/> reads the data, loads the base through the model registry (its
/// identity recorded while it loads), opens the tokenizer, injects the adapter, trains, and hands the task one
/// <see cref="FineTunedModel"/> to wrap in its transformer.
/// </summary>
public abstract class BoneTrainerBase<TTransformer> : IEstimator<TTransformer> where TTransformer : class, ITransformer
{
    private readonly MLContext _context;
    private readonly FineTuningOptions _options;
    private readonly string _name;

    private protected BoneTrainerBase(MLContext context, FineTuningOptions options, string name)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _context = context;
        _options = options;
        _name = name;
        // Batch order, dropout, new heads and adapter initialisation follow the MLContext's seed.
        Seed = ((IHostEnvironment)context).Register(name).Rand.Next();
    }

    /// <summary>The seed this estimator trains with (drawn from the MLContext's).</summary>
    private protected int Seed { get; }

    private protected MLContext Context => _context;

    /// <inheritdoc/>
    public abstract SchemaShape GetOutputSchema(SchemaShape inputSchema);

    /// <summary>Reads and checks the training (and validation) data; returns the task's part of the fit.</summary>
    private protected abstract FitTask Begin(IDataView input, IChannel channel);

    /// <summary>Trains the base on <paramref name="input"/> and returns the fitted transformer.</summary>
    public TTransformer Fit(IDataView input)
    {
        ArgumentNullException.ThrowIfNull(input);
        var o = _options;
        IHost host = ((IHostEnvironment)_context).Register(_name);
        using IChannel channel = host.Start("Fit");
        FitTask task = Begin(input, channel);

        var device = DeviceSelection.Choose(o.Device, _context);
        Nn.TorchThreads.Ensure(o.Threads);
        // Everything random in this fit (a new head, adapter initial values, dropout, batch order) follows this
        // estimator's seed through generators of its own: concurrent fits do not share torch's global generator.
        using var random = new torch.Generator((ulong)Seed);
        var fingerprint = new WeightFingerprint();
        IPretrainedModel model = task.LoadBase(o.ModelPath, new ModelLoadOptions { DType = o.DType.ToScalarType(), Device = device, Fingerprint = fingerprint, Random = random });
        try
        {
            channel.Info(MessageSensitivity.None, $"Loaded {o.ModelPath} ({model.ModelType}): {model.Module.parameters().Sum(p => p.numel()):N0} parameters.");
            model.GradientCheckpointing = o.GradientCheckpointing;
            TokenizerFiles tokenizer = task.LocateTokenizer(o.ModelPath);
            task.Prepare(model, tokenizer, warning => channel.Warning(MessageSensitivity.None, "warning: " + warning));

            AdapterConfig? config = AdapterConfigFactory.Create(o, model.DefaultTargetModules, task.ModulesToSave);
            AdapterModel? adapted = config is null ? null : AdapterModel.Inject(model.Module, config, random);
            List<Parameter> trainable = adapted is null ? [.. model.Module.parameters()] : [.. adapted.TrainableParameters()];
            if (adapted is null) foreach (Parameter p in trainable) p.requires_grad = true;
            channel.Info(MessageSensitivity.None, adapted is null ? $"Full fine-tuning: {trainable.Sum(p => p.numel()):N0} parameters." : $"{o.Adapter} r={o.EffectiveRank}: {adapted.Summary()}");

            TrainingOptions training = o.ToTrainingOptions(Seed);
            if (o.CheckpointDirectory is { } checkpoints)
                training.Checkpoints = new CheckpointSettings(checkpoints, o.CheckpointEverySteps, o.KeepCheckpoints, o.Resume, new Dictionary<string, string>
                {
                    ["data"] = task.DataDigest(),
                    ["base model"] = string.Join(",", fingerprint.Digests().OrderBy(d => d.Key, StringComparer.Ordinal).Select(d => $"{d.Key}:{d.Value}")),
                    ["options"] = o.TrainingIdentity(Seed),
                });
            TrainingResult result = task.Train(model, trainable, training, o.Progress, line => channel.Info(MessageSensitivity.None, line), o.CancellationToken);
            channel.Info(MessageSensitivity.None, $"Trained {result.StepsRun} steps; final loss {result.History.LastOrDefault()?.Loss:F4}" + (result.BestValidationMetric is { } best ? $", best validation metric {best:F4}" : "") + ".");
            model.Module.eval();

            string fullPath = Path.GetFullPath(o.ModelPath);
            var record = new SavedModel
            {
                Base = new BaseModelRecord
                {
                    Architecture = ModelRegistry.ArchitectureOf(o.ModelPath), Path = fullPath, Files = BaseModelIdentity.Record(fullPath, fingerprint),
                    Embedded = o.EmbedBaseModel || adapted is null, DType = o.DType,
                },
                Adapter = o.Adapter,
                AdapterConfigJson = config is null ? null : new PeftAdapterConfig(config, task.PeftTaskType).ToJson(),
                MaxSequenceLength = task.MaxSequenceLength, BatchSize = o.BatchSize, Threads = o.Threads,
            };
            return (TTransformer)task.CreateTransformer(new FineTunedModel(model, adapted, tokenizer, task.Complete(record)), result.History);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}

/// <summary>A task's part of one <c>Fit</c>: its data, base model kind, tokenizer, loss and transformer.</summary>
internal abstract class FitTask
{
    /// <summary>PEFT's task_type for exported adapters.</summary>
    public abstract string PeftTaskType { get; }

    /// <summary>Modules trained in full next to the adapter (e.g. a new classification head).</summary>
    public abstract IReadOnlyList<string> ModulesToSave { get; }

    /// <summary>Tokens per example.</summary>
    public abstract int MaxSequenceLength { get; }

    /// <summary>Loads the base through the registry.</summary>
    public abstract IPretrainedModel LoadBase(string path, ModelLoadOptions options);

    /// <summary>The tokenizer's files for the base at <paramref name="modelPath"/>.</summary>
    public abstract TokenizerFiles LocateTokenizer(string modelPath);

    /// <summary>
    /// Opens the tokenizer and turns the data into token ids (checked against the model's vocabulary and positions);
    /// <paramref name="warn"/> hears how many examples were truncated to the maximum length.
    /// </summary>
    public abstract void Prepare(IPretrainedModel model, TokenizerFiles tokenizer, Action<string> warn);

    /// <summary>SHA-256 of the prepared training examples (token ids and targets), naming the data in checkpoints.</summary>
    public abstract string DataDigest();

    /// <summary>Runs the training loop.</summary>
    public abstract TrainingResult Train(IPretrainedModel model, IReadOnlyList<Parameter> trainable, TrainingOptions options,
        IProgress<TrainingProgress>? progress, Action<string> log, CancellationToken cancellationToken);

    /// <summary>Adds the task's settings to the shared record.</summary>
    public abstract SavedModel Complete(SavedModel record);

    /// <summary>The task's transformer around the trained model.</summary>
    public abstract ITransformer CreateTransformer(FineTunedModel model, IReadOnlyList<TrainingProgress> history);
}
