using Microsoft.ML.Bone.Evaluation;

namespace Microsoft.ML.Bone;

/// <summary>
/// GLUE metrics of one task. The official ones are set for the task (accuracy for SST-2, QNLI, RTE, MNLI; accuracy and
/// F1 for MRPC and QQP; Matthews correlation for CoLA; Pearson and Spearman for STS-B); the others are null.
/// ML.NET's own metrics sit next to them. Rows whose label is missing (a key of 0, e.g. a class unseen at training, or a
/// NaN score) are left out of both, as ML.NET's evaluators do; <see cref="SkippedRows"/> says how many.
/// </summary>
public sealed record GlueEvaluation(
    GlueTask Task, int Count, double? Accuracy, double? F1, double? MatthewsCorrelation, double? Pearson, double? Spearman,
    MulticlassClassificationMetrics? Multiclass, RegressionMetrics? Regression, int SkippedRows = 0)
{
    /// <summary>The task's headline score as GLUE reports it (mean of the two metrics for MRPC, QQP and STS-B).</summary>
    public double Score => Task switch
    {
        GlueTask.Cola => MatthewsCorrelation!.Value,
        GlueTask.Mrpc or GlueTask.Qqp => (Accuracy!.Value + F1!.Value) / 2,
        GlueTask.StsB => (Pearson!.Value + Spearman!.Value) / 2,
        _ => Accuracy!.Value,
    };

    /// <inheritdoc/>
    public override string ToString()
    {
        var parts = new List<string> { $"{Task} (n = {Count}{(SkippedRows > 0 ? $", {SkippedRows} rows without a label skipped" : "")})" };
        if (Accuracy is { } a) parts.Add($"accuracy {a:F4}");
        if (F1 is { } f) parts.Add($"F1 {f:F4}");
        if (MatthewsCorrelation is { } m) parts.Add($"Matthews {m:F4}");
        if (Pearson is { } p) parts.Add($"Pearson {p:F4}");
        if (Spearman is { } s) parts.Add($"Spearman {s:F4}");
        return string.Join(", ", parts);
    }
}
