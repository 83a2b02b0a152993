namespace Microsoft.ML.Bone;

public sealed partial class BoneCatalog
{
    /// <summary>
    /// Fine-tunes a Hugging Face RoBERTa checkpoint to classify text (key-typed label) or score it (Single label).
    /// </summary>
    /// <param name="modelPath">Directory of the checkpoint (config.json, safetensors, vocab.json, merges.txt).</param>
    /// <param name="labelColumnName">Label: key type (classification) or Single (regression).</param>
    /// <param name="sentence1ColumnName">Text column.</param>
    /// <param name="sentence2ColumnName">Optional second text column for sentence pairs.</param>
    /// <param name="adapter">Adapter method; Bone by default.</param>
    /// <param name="rank">Block size or rank; 0 = the adapter's default.</param>
    /// <param name="maxEpochs">Passes over the data.</param>
    /// <param name="batchSize">Examples per batch.</param>
    /// <param name="validationSet">Optional validation data, scored after each epoch.</param>
    /// <example>The full pipeline: <c>samples/TextClassification/Program.cs</c>.</example>
    public BoneTextClassificationTrainer TextClassification(
        string modelPath, string labelColumnName = "Label", string sentence1ColumnName = "Sentence1", string? sentence2ColumnName = null,
        AdapterKind adapter = AdapterKind.Bone, int rank = 0, int maxEpochs = 3, int batchSize = 16, IDataView? validationSet = null) =>
        TextClassification(new BoneTextClassificationOptions
        {
            ModelPath = modelPath, LabelColumnName = labelColumnName, Sentence1ColumnName = sentence1ColumnName, Sentence2ColumnName = sentence2ColumnName,
            Adapter = adapter, Rank = rank, MaxEpochs = maxEpochs, BatchSize = batchSize, ValidationSet = validationSet,
        });

    /// <summary>Fine-tunes a Hugging Face RoBERTa checkpoint as <paramref name="options"/> say.</summary>
    /// <example>The full pipeline: <c>samples/TextClassification/Program.cs</c>.</example>
    public BoneTextClassificationTrainer TextClassification(BoneTextClassificationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return new BoneTextClassificationTrainer(Context, options);
    }
}
