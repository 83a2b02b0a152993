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
    /// <summary>Directory of a Hugging Face checkpoint (config.json + safetensors). Required.</summary>
    public string ModelPath = "";

    /// <summary>Adapter method. Default <see cref="AdapterKind.Bone"/>.</summary>
    public AdapterKind Adapter = AdapterKind.Bone;

    /// <summary>Block size (Bone, Bat) or rank (LoRA family). 0 = 64 for Bone/Bat, 8 for LoRA/PiSSA/OLoRA.</summary>
    public int Rank;

    /// <summary>LoRA family only: scaling numerator alpha. 0 = 2 × rank.</summary>
    public double Alpha;

    /// <summary>LoRA family only: use alpha / √r (rsLoRA). Default false.</summary>
    public bool UseRsLora;

    /// <summary>PiSSA only: power iterations of the fast randomized SVD; 0 (default) runs the exact SVD.</summary>
    public int PissaIterations;

    /// <summary>Module names that get adapters (PEFT suffix match); null = the model's defaults.</summary>
    public string[]? TargetModules;

    /// <summary>Peak learning rate. 0 = 2e-4 for Bone/Bat, 4e-4 for LoRA/PiSSA/OLoRA, 2e-5 for full fine-tuning.</summary>
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

    /// <summary>Bat only: recompute merged weights in the backward pass to save memory. Default false.</summary>
    public bool GradientCheckpointing;

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

    /// <summary>The training loop's settings for these options and <paramref name="seed"/>.</summary>
    internal TrainingOptions ToTrainingOptions(int seed) => new()
    {
        LearningRate = EffectiveLearningRate, BatchSize = BatchSize, GradientAccumulationSteps = GradientAccumulationSteps,
        Epochs = MaxEpochs, MaxSteps = MaxSteps, WarmupRatio = WarmupRatio, WeightDecay = WeightDecay, Schedule = Schedule,
        MaxGradNorm = MaxGradNorm, EvaluateEverySteps = EvaluateEverySteps, EarlyStoppingPatience = EarlyStoppingPatience, Seed = seed,
    };

    internal int EffectiveRank => Rank > 0 ? Rank : Adapter is AdapterKind.Bone or AdapterKind.Bat ? 64 : 8;

    internal double EffectiveAlpha => Alpha > 0 ? Alpha : 2.0 * EffectiveRank;

    internal double EffectiveLearningRate => LearningRate > 0 ? LearningRate : Adapter switch
    {
        AdapterKind.Bone or AdapterKind.Bat => 2e-4,
        AdapterKind.FullFineTuning => 2e-5,
        _ => 4e-4,
    };
}
