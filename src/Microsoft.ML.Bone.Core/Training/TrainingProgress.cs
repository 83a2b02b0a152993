namespace Microsoft.ML.Bone.Training;

/// <summary>A snapshot of training, reported after every optimizer step and after every validation.</summary>
/// <param name="Step">Optimizer steps done.</param>
/// <param name="TotalSteps">Optimizer steps planned.</param>
/// <param name="Epoch">Current epoch, from 1.</param>
/// <param name="Loss">Mean training loss of the last step.</param>
/// <param name="LearningRate">Learning rate used by the last step.</param>
/// <param name="TokensPerSecond">Training throughput so far (non-padding tokens).</param>
/// <param name="Elapsed">Time since training started.</param>
/// <param name="Remaining">Estimated time to finish.</param>
/// <param name="ValidationMetric">The validation metric, when this report follows a validation.</param>
public sealed record TrainingProgress(
    int Step, int TotalSteps, int Epoch, double Loss, double LearningRate, double TokensPerSecond,
    TimeSpan Elapsed, TimeSpan Remaining, double? ValidationMetric = null)
{
    /// <inheritdoc/>
    public override string ToString() =>
        $"step {Step}/{TotalSteps} epoch {Epoch} loss {Loss:F4} lr {LearningRate:E2} {TokensPerSecond:F0} tok/s eta {Remaining:hh\\:mm\\:ss}"
        + (ValidationMetric is { } m ? $" validation {m:F4}" : "");
}
