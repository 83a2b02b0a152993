namespace Microsoft.ML.Bone.Training;

/// <summary>Optimizer and schedule settings of <see cref="AdapterTrainingLoop"/>.</summary>
public sealed class TrainingOptions
{
    /// <summary>Peak learning rate of AdamW. Default 1e-4.</summary>
    public double LearningRate { get; set; } = 1e-4;

    /// <summary>Examples per micro-batch. Default 16.</summary>
    public int BatchSize { get; set; } = 16;

    /// <summary>Micro-batches whose gradients are summed before each optimizer step. Default 1.</summary>
    public int GradientAccumulationSteps { get; set; } = 1;

    /// <summary>Passes over the training data. Default 3.</summary>
    public int Epochs { get; set; } = 3;

    /// <summary>Optional cap on optimizer steps (0 = no cap). Default 0.</summary>
    public int MaxSteps { get; set; }

    /// <summary>Share of the steps spent warming the rate up linearly from 0. Default 0.06.</summary>
    public double WarmupRatio { get; set; } = 0.06;

    /// <summary>AdamW decoupled weight decay, applied to matrices only (not biases or norms). Default 0.</summary>
    public double WeightDecay { get; set; }

    /// <summary>Decay after warmup. Default linear.</summary>
    public LearningRateScheduleKind Schedule { get; set; } = LearningRateScheduleKind.Linear;

    /// <summary>Global gradient-norm clip; 0 turns clipping off. Default 1.0.</summary>
    public double MaxGradNorm { get; set; } = 1.0;

    /// <summary>AdamW β₁, β₂ and ε. Defaults 0.9, 0.999, 1e-8.</summary>
    public (double Beta1, double Beta2, double Epsilon) Adam { get; set; } = (0.9, 0.999, 1e-8);

    /// <summary>Validate every this many optimizer steps; 0 (default) validates after each epoch.</summary>
    public int EvaluateEverySteps { get; set; }

    /// <summary>Stop after this many validations without improvement; 0 (default) never stops early.</summary>
    public int EarlyStoppingPatience { get; set; }

    /// <summary>Seed for batch order and dropout. Default 1.</summary>
    public int Seed { get; set; } = 1;

    /// <summary>
    /// Optimizer steps in a row whose loss or gradients are not finite (each is skipped: no update) before training
    /// stops with an error. Default 5.
    /// </summary>
    public int MaxConsecutiveNonFiniteSteps { get; set; } = 5;

    /// <summary>Checkpoints to write (and resume from); null (default) writes none.</summary>
    public CheckpointSettings? Checkpoints { get; set; }

    /// <summary>Checks values; errors name the option.</summary>
    public void Validate()
    {
        if (!(LearningRate > 0)) throw new ArgumentOutOfRangeException(nameof(LearningRate), LearningRate, "must be positive");
        if (BatchSize <= 0) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "must be positive");
        if (MaxConsecutiveNonFiniteSteps <= 0) throw new ArgumentOutOfRangeException(nameof(MaxConsecutiveNonFiniteSteps), MaxConsecutiveNonFiniteSteps, "must be positive");
        if (GradientAccumulationSteps <= 0) throw new ArgumentOutOfRangeException(nameof(GradientAccumulationSteps), GradientAccumulationSteps, "must be positive");
        if (Epochs <= 0) throw new ArgumentOutOfRangeException(nameof(Epochs), Epochs, "must be positive");
        if (MaxSteps < 0) throw new ArgumentOutOfRangeException(nameof(MaxSteps), MaxSteps, "must be ≥ 0");
        if (WarmupRatio is < 0 or > 1) throw new ArgumentOutOfRangeException(nameof(WarmupRatio), WarmupRatio, "must be in [0, 1]");
        if (WeightDecay < 0) throw new ArgumentOutOfRangeException(nameof(WeightDecay), WeightDecay, "must be ≥ 0");
        if (MaxGradNorm < 0) throw new ArgumentOutOfRangeException(nameof(MaxGradNorm), MaxGradNorm, "must be ≥ 0");
        if (EvaluateEverySteps < 0) throw new ArgumentOutOfRangeException(nameof(EvaluateEverySteps), EvaluateEverySteps, "must be ≥ 0");
        if (EarlyStoppingPatience < 0) throw new ArgumentOutOfRangeException(nameof(EarlyStoppingPatience), EarlyStoppingPatience, "must be ≥ 0");
        if (Checkpoints is { } c)
        {
            if (string.IsNullOrWhiteSpace(c.Directory)) throw new ArgumentException("The checkpoint directory is empty.", nameof(Checkpoints));
            if (c.EverySteps <= 0) throw new ArgumentOutOfRangeException(nameof(Checkpoints), c.EverySteps, "checkpoint interval must be positive");
            if (c.Keep <= 0) throw new ArgumentOutOfRangeException(nameof(Checkpoints), c.Keep, "checkpoints to keep must be positive");
        }
    }
}
