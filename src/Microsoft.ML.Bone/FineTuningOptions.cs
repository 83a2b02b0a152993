using Microsoft.ML.Bone.Training;

namespace Microsoft.ML.Bone;

/// <summary>Numeric precision of the frozen base weights.</summary>
public enum BaseDType
{
    /// <summary>32-bit floats (default; what CPUs compute fastest).</summary>
    Float32,
    /// <summary>bfloat16: half the memory; adapters still compute in float32.</summary>
    BFloat16,
    /// <summary>IEEE half: half the memory; adapters still compute in float32.</summary>
    Float16,
}

/// <summary>
/// Options every Bone trainer shares: the base model, the adapter and the optimisation schedule. Zero means
/// "the default for the chosen adapter" for <see cref="Rank"/>, <see cref="Alpha"/> and <see cref="LearningRate"/>.
/// </summary>
public abstract class FineTuningOptions
{
    /// <summary>
    /// The base checkpoint: a Hugging Face directory (config.json + safetensors, single or sharded; the architecture
    /// comes from config.json's <c>model_type</c>) or a single-file format the task supports. Required.
    /// </summary>
    public string ModelPath = "";

    /// <summary>Adapter method. Default <see cref="AdapterKind.Bone"/>.</summary>
    public AdapterKind Adapter = AdapterKind.Bone;

    /// <summary>Block size (Bone, Bat, MiSS-mini) or rank (LoRA family). 0 = 64 for the Bone family, 8 for LoRA/PiSSA/OLoRA.</summary>
    public int Rank;

    /// <summary>MissMini only: the block's width along the output (PEFT <c>mini_r</c>); must divide every targeted layer's output size. 0 = 1, PEFT's default.</summary>
    public int MiniR;

    /// <summary>
    /// Dropout on the input of the adapter path during training (PEFT <c>miss_dropout</c> / <c>lora_dropout</c>), for
    /// Bone, MiSS-mini and the LoRA family; Bat has none (as in PEFT). Default 0.
    /// </summary>
    public double AdapterDropout;

    /// <summary>LoRA family only: scaling numerator alpha. 0 = 2 × rank.</summary>
    public double Alpha;

    /// <summary>LoRA family only: use alpha / √r (rsLoRA). Default false.</summary>
    public bool UseRsLora;

    /// <summary>PiSSA only: power iterations of the fast randomized SVD; 0 (default) runs the exact SVD.</summary>
    public int PissaIterations;

    /// <summary>Module names that get adapters (PEFT suffix match); null = the model's defaults.</summary>
    public string[]? TargetModules;

    /// <summary>Peak learning rate. 0 = 2e-4 for the Bone family, 4e-4 for LoRA/PiSSA/OLoRA, 2e-5 for full fine-tuning, 0.1 for state tuning (RWKV-PEFT uses large rates there).</summary>
    public double LearningRate;

    /// <summary>Examples per batch. Default 16.</summary>
    public int BatchSize = 16;

    /// <summary>Batches accumulated per optimizer step. Default 1.</summary>
    public int GradientAccumulationSteps = 1;

    /// <summary>Passes over the training data. Default 3.</summary>
    public int MaxEpochs = 3;

    /// <summary>Optional cap on optimizer steps; 0 (default) means no cap.</summary>
    public int MaxSteps;

    /// <summary>Share of steps with linearly rising learning rate. Default 0.06.</summary>
    public double WarmupRatio = 0.06;

    /// <summary>AdamW weight decay on matrices. Default 0.</summary>
    public double WeightDecay;

    /// <summary>Learning-rate decay after warmup. Default linear.</summary>
    public LearningRateScheduleKind Schedule = LearningRateScheduleKind.Linear;

    /// <summary>Gradient-norm clip; 0 disables. Default 1.0.</summary>
    public double MaxGradNorm = 1.0;

    /// <summary>Optional validation data, scored after every epoch (or every <see cref="EvaluateEverySteps"/> steps).</summary>
    public IDataView? ValidationSet;

    /// <summary>Validate every this many optimizer steps; 0 (default) = after each epoch.</summary>
    public int EvaluateEverySteps;

    /// <summary>Stop after this many validations without improvement; 0 (default) = never. The best weights are kept.</summary>
    public int EarlyStoppingPatience;

    /// <summary>
    /// Recompute every layer in the backward pass instead of keeping its intermediates (transformers'
    /// <c>gradient_checkpointing_enable</c>; Bat also rebuilds its merged weight there): the same gradients for
    /// about a third more compute and far less memory. Default false.
    /// </summary>
    public bool GradientCheckpointing;

    /// <summary>
    /// CPU threads libtorch uses inside each operation, for training and for the trained model's scoring and
    /// generation (it is saved with the model). 0 (default) = one per logical core (<see cref="Environment.ProcessorCount"/>).
    /// The setting is process-wide, as libtorch's is.
    /// </summary>
    public int Threads;

    /// <summary>Torch device, e.g. "cpu" or "cuda:0"; null (default) follows <c>MLContext.GpuDeviceId</c> / <c>FallbackToCpu</c>.</summary>
    public string? Device;

    /// <summary>Precision of the frozen base weights. Default float32.</summary>
    public BaseDType DType = BaseDType.Float32;

    /// <summary>Store the base model's weights inside saved model zips instead of a reference (path + SHA-256). Default false.</summary>
    public bool EmbedBaseModel;

    /// <summary>Stops training when cancelled.</summary>
    public CancellationToken CancellationToken;

    /// <summary>Receives a report after every optimizer step and validation.</summary>
    public IProgress<TrainingProgress>? Progress;

    /// <summary>
    /// Checks every option when the estimator is created; errors name the option as it is spelled here
    /// (<c>MaxEpochs</c>, <c>BatchSize</c>, …) and say what is allowed.
    /// </summary>
    internal virtual void Validate()
    {
        if (string.IsNullOrWhiteSpace(ModelPath)) throw new ArgumentException("ModelPath must name the base checkpoint (a Hugging Face directory or a supported single file).", nameof(ModelPath));
        if (!Directory.Exists(ModelPath) && !File.Exists(ModelPath)) throw new DirectoryNotFoundException($"ModelPath: '{ModelPath}' is neither a directory nor a file.");
        if (!Enum.IsDefined(Adapter)) throw new ArgumentOutOfRangeException(nameof(Adapter), Adapter, "Adapter: not one of the AdapterKind values.");
        Positive(nameof(BatchSize), BatchSize);
        // The saved model's record accepts no more than these when it loads (Persistence/SavedModelValidation).
        AtMost(nameof(BatchSize), BatchSize, Persistence.SavedModelValidation.MaxBatchSize);
        AtMost(nameof(Threads), Threads, Persistence.SavedModelValidation.MaxThreads);
        Positive(nameof(GradientAccumulationSteps), GradientAccumulationSteps);
        Positive(nameof(MaxEpochs), MaxEpochs);
        NotNegative(nameof(Rank), Rank, "0 picks the adapter's default");
        NotNegative(nameof(Alpha), Alpha, "0 means 2 × rank");
        NotNegative(nameof(LearningRate), LearningRate, "0 picks the adapter's default");
        NotNegative(nameof(MaxSteps), MaxSteps, "0 means no cap");
        if (CheckpointDirectory is not null)
        {
            if (string.IsNullOrWhiteSpace(CheckpointDirectory)) throw new ArgumentException("CheckpointDirectory is empty; give a folder or null.", nameof(CheckpointDirectory));
            if (File.Exists(CheckpointDirectory)) throw new ArgumentException($"CheckpointDirectory {CheckpointDirectory} is a file; give a folder.", nameof(CheckpointDirectory));
            Positive(nameof(CheckpointEverySteps), CheckpointEverySteps);
            Positive(nameof(KeepCheckpoints), KeepCheckpoints);
        }
        else if (Resume) throw new ArgumentException("Resume needs CheckpointDirectory: the folder to resume from.", nameof(Resume));
        NotNegative(nameof(WeightDecay), WeightDecay);
        NotNegative(nameof(MaxGradNorm), MaxGradNorm, "0 turns clipping off");
        NotNegative(nameof(EvaluateEverySteps), EvaluateEverySteps, "0 validates after each epoch");
        NotNegative(nameof(EarlyStoppingPatience), EarlyStoppingPatience, "0 never stops early");
        NotNegative(nameof(PissaIterations), PissaIterations, "0 runs the exact SVD");
        if (WarmupRatio is < 0 or > 1 || double.IsNaN(WarmupRatio)) throw new ArgumentOutOfRangeException(nameof(WarmupRatio), WarmupRatio, "WarmupRatio must be between 0 and 1.");
        if (PissaIterations > 0 && Adapter != AdapterKind.PiSSA) throw new ArgumentException($"PissaIterations applies to Adapter = PiSSA only, not {Adapter}.", nameof(PissaIterations));
        if (UseRsLora && Adapter is not (AdapterKind.Lora or AdapterKind.PiSSA or AdapterKind.OLoRA)) throw new ArgumentException($"UseRsLora applies to the LoRA family only, not {Adapter}.", nameof(UseRsLora));
        NotNegative(nameof(MiniR), MiniR, "0 means 1");
        NotNegative(nameof(Threads), Threads, "0 means one per logical core");
        if (MiniR > 0 && Adapter != AdapterKind.MissMini) throw new ArgumentException($"MiniR applies to Adapter = MissMini only, not {Adapter}.", nameof(MiniR));
        if (AdapterDropout is < 0 or >= 1 || double.IsNaN(AdapterDropout)) throw new ArgumentOutOfRangeException(nameof(AdapterDropout), AdapterDropout, "AdapterDropout must be in [0, 1).");
        if (AdapterDropout > 0 && Adapter is AdapterKind.Bat or AdapterKind.FullFineTuning or AdapterKind.StateTuning) throw new ArgumentException($"AdapterDropout has no meaning for {Adapter} (PEFT's Bat has no adapter-input path to drop).", nameof(AdapterDropout));
        if (TargetModules is { } targets && targets.Any(string.IsNullOrWhiteSpace)) throw new ArgumentException("TargetModules has an empty name.", nameof(TargetModules));
        if (TargetModules is { Length: > 0 } && Adapter == AdapterKind.StateTuning) throw new ArgumentException("TargetModules has no meaning for StateTuning (it trains the initial state, no layer).", nameof(TargetModules));
        if (TargetModules is { Length: > 0 } && Adapter == AdapterKind.FullFineTuning) throw new ArgumentException("TargetModules has no meaning for FullFineTuning (every parameter trains).", nameof(TargetModules));
    }

    private protected static void Positive(string option, double value)
    {
        if (!(value > 0)) throw new ArgumentOutOfRangeException(option, value, $"{option} must be positive.");
    }

    private protected static void AtMost(string option, double value, double limit)
    {
        if (value > limit) throw new ArgumentOutOfRangeException(option, value, $"{option} must be at most {limit}.");
    }

    private protected static void NotNegative(string option, double value, string? meaning = null)
    {
        if (!(value >= 0)) throw new ArgumentOutOfRangeException(option, value, $"{option} must be ≥ 0{(meaning is null ? "" : $" ({meaning})")}.");
    }

    /// <summary>
    /// Folder for training checkpoints (adapter and head weights, optimizer moments, scheduler position, random
    /// state and data position), each written atomically; null (default) writes none.
    /// </summary>
    public string? CheckpointDirectory;

    /// <summary>Optimizer steps between checkpoints. Default 100.</summary>
    public int CheckpointEverySteps = 100;

    /// <summary>Newest checkpoints kept in <see cref="CheckpointDirectory"/>; older ones are deleted. Default 2.</summary>
    public int KeepCheckpoints = 2;

    /// <summary>
    /// Continue from the newest valid checkpoint in <see cref="CheckpointDirectory"/> (a fresh start when there is
    /// none). A checkpoint made with other data, another base model or other options is refused, naming which.
    /// Default false.
    /// </summary>
    public bool Resume;

    /// <summary>Everything that shapes the training run, as one string: a checkpoint of other options is refused.</summary>
    internal string TrainingIdentity(int seed) => string.Join(";", new object?[]
    {
        Adapter, EffectiveRank, MiniR, EffectiveAlpha, UseRsLora, AdapterDropout, PissaIterations, TargetModules is null ? "" : string.Join(",", TargetModules),
        EffectiveLearningRate, BatchSize, GradientAccumulationSteps, MaxEpochs, MaxSteps, WarmupRatio, WeightDecay, Schedule, MaxGradNorm,
        EvaluateEverySteps, EarlyStoppingPatience, DType, seed,
    }.Select(v => Convert.ToString(v, System.Globalization.CultureInfo.InvariantCulture)));

    /// <summary>The training loop's settings for these options and <paramref name="seed"/>.</summary>
    internal TrainingOptions ToTrainingOptions(int seed) => new()
    {
        LearningRate = EffectiveLearningRate, BatchSize = BatchSize, GradientAccumulationSteps = GradientAccumulationSteps,
        Epochs = MaxEpochs, MaxSteps = MaxSteps, WarmupRatio = WarmupRatio, WeightDecay = WeightDecay, Schedule = Schedule,
        MaxGradNorm = MaxGradNorm, EvaluateEverySteps = EvaluateEverySteps, EarlyStoppingPatience = EarlyStoppingPatience, Seed = seed,
    };

    internal int EffectiveRank => Rank > 0 ? Rank : Adapter is AdapterKind.Bone or AdapterKind.Bat or AdapterKind.MissMini ? 64 : 8;

    internal double EffectiveAlpha => Alpha > 0 ? Alpha : 2.0 * EffectiveRank;

    internal double EffectiveLearningRate => LearningRate > 0 ? LearningRate : Adapter switch
    {
        AdapterKind.Bone or AdapterKind.Bat or AdapterKind.MissMini => 2e-4,
        AdapterKind.FullFineTuning => 2e-5,
        AdapterKind.StateTuning => 1e-1,
        _ => 4e-4,
    };
}

internal static class BaseDTypeExtensions
{
    public static TorchSharp.torch.ScalarType ToScalarType(this BaseDType dtype) => dtype switch
    {
        BaseDType.BFloat16 => TorchSharp.torch.ScalarType.BFloat16,
        BaseDType.Float16 => TorchSharp.torch.ScalarType.Float16,
        _ => TorchSharp.torch.ScalarType.Float32,
    };
}
