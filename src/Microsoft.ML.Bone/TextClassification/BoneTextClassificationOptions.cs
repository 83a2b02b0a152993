namespace Microsoft.ML.Bone;

/// <summary>The metric validation and early stopping follow.</summary>
public enum ValidationMetric
{
    /// <summary>Accuracy (classification default).</summary>
    Accuracy,
    /// <summary>F1 of class 1 (MRPC, QQP).</summary>
    F1,
    /// <summary>Matthews correlation (CoLA).</summary>
    MatthewsCorrelation,
    /// <summary>Pearson correlation (regression default, STS-B).</summary>
    Pearson,
    /// <summary>Spearman correlation (STS-B).</summary>
    Spearman,
}

/// <summary>
/// Options of <see cref="BoneTextClassificationTrainer"/>: fine-tune a RoBERTa checkpoint with an adapter to classify
/// (key-typed label) or score (float label, regression) one sentence or a sentence pair.
/// </summary>
public sealed class BoneTextClassificationOptions : FineTuningOptions
{
    /// <summary>Text column of the first sentence. Default "Sentence1".</summary>
    public string Sentence1ColumnName = "Sentence1";

    /// <summary>Optional text column of the second sentence (pair tasks such as MRPC, RTE, STS-B). Default null.</summary>
    public string? Sentence2ColumnName;

    /// <summary>Label column: a key type (classification, from <c>MapValueToKey</c>) or Single (regression). Default "Label".</summary>
    public string LabelColumnName = "Label";

    /// <summary>Output scores: class scores (vector) for classification, the prediction for regression. Default "Score".</summary>
    public string ScoreColumnName = "Score";

    /// <summary>Output predicted class (key type; classification only). Default "PredictedLabel".</summary>
    public string PredictedLabelColumnName = "PredictedLabel";

    /// <summary>Tokens per example, special tokens included; longer inputs are truncated (longest first for pairs). Default 128.</summary>
    public int MaxSequenceLength = 128;

    /// <summary>Metric for validation and early stopping; null = accuracy (classification) or Pearson (regression).</summary>
    /// <remarks>
    /// The <see cref="FineTuningOptions.ValidationSet"/> may be given raw (as the training data was before the
    /// pipeline's <c>MapValueToKey</c>) or mapped by its own <c>MapValueToKey</c>: its labels are matched to the
    /// training classes by value, and rows with a class training never saw are skipped (with a warning).
    /// </remarks>
    public ValidationMetric? ValidationMetric;

    internal override void Validate()
    {
        base.Validate();
        foreach (var (option, value) in new[] { (nameof(Sentence1ColumnName), Sentence1ColumnName), (nameof(LabelColumnName), LabelColumnName), (nameof(ScoreColumnName), ScoreColumnName), (nameof(PredictedLabelColumnName), PredictedLabelColumnName) })
            if (string.IsNullOrWhiteSpace(value)) throw new ArgumentException($"{option} must name a column.", option);
        if (Sentence2ColumnName is not null && string.IsNullOrWhiteSpace(Sentence2ColumnName)) throw new ArgumentException($"{nameof(Sentence2ColumnName)} must name a column or be null.", nameof(Sentence2ColumnName));
        if (MaxSequenceLength < 8) throw new ArgumentOutOfRangeException(nameof(MaxSequenceLength), MaxSequenceLength, "MaxSequenceLength must be at least 8.");
        AtMost(nameof(MaxSequenceLength), MaxSequenceLength, Persistence.SavedModelValidation.MaxSequenceLengthLimit);
        if (!Directory.Exists(ModelPath)) throw new DirectoryNotFoundException($"ModelPath: '{ModelPath}' is not a directory; text classification needs a Hugging Face checkpoint folder.");
    }
}
