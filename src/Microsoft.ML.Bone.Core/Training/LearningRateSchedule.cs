namespace Microsoft.ML.Bone.Training;

/// <summary>How the learning rate changes after warmup.</summary>
public enum LearningRateScheduleKind
{
    /// <summary>Linear decay to zero at the last step (Hugging Face's default).</summary>
    Linear,

    /// <summary>Half-cosine decay to zero at the last step.</summary>
    Cosine,

    /// <summary>Constant after warmup.</summary>
    Constant,
}

/// <summary>Learning rate per optimizer step: linear warmup from 0, then the chosen decay (as transformers' schedulers).</summary>
public static class LearningRateSchedule
{
    /// <summary>The rate for optimizer step <paramref name="step"/> (0-based) of <paramref name="totalSteps"/>.</summary>
    public static double At(LearningRateScheduleKind kind, double baseRate, int step, int totalSteps, int warmupSteps)
    {
        if (warmupSteps > 0 && step < warmupSteps) return baseRate * (step + 1) / warmupSteps;
        if (kind == LearningRateScheduleKind.Constant) return baseRate;
        double progress = totalSteps <= warmupSteps ? 1 : (double)(step - warmupSteps) / (totalSteps - warmupSteps);
        progress = Math.Clamp(progress, 0, 1);
        return kind == LearningRateScheduleKind.Linear
            ? baseRate * (1 - progress)
            : baseRate * 0.5 * (1 + Math.Cos(Math.PI * progress));
    }
}
