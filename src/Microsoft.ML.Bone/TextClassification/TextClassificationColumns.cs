namespace Microsoft.ML.Bone;

/// <summary>Checks the input columns of text classification and reports problems by column name.</summary>
internal static class TextClassificationColumns
{
    /// <summary>The text columns to read (Sentence2 may be absent from the options).</summary>
    public static IReadOnlyList<string> TextColumns(string sentence1, string? sentence2) => sentence2 is null ? [sentence1] : [sentence1, sentence2];

    /// <summary>Throws unless every text column exists and is text.</summary>
    public static void CheckText(DataViewSchema schema, string sentence1, string? sentence2, string dataName)
    {
        foreach (string name in TextColumns(sentence1, sentence2))
        {
            var column = Find(schema, name, dataName);
            if (column.Type is not TextDataViewType)
                throw new ArgumentException($"Column '{name}' of the {dataName} must be text (String), but it is {column.Type}.", name);
        }
    }

    /// <summary>
    /// The label column's role: a key type (classification; its count is the number of classes) or Single
    /// (regression). Anything else is an error that says how to fix it.
    /// </summary>
    public static (bool IsRegression, KeyDataViewType? Key) CheckLabel(DataViewSchema schema, string label, string dataName)
    {
        var column = Find(schema, label, dataName);
        return column.Type switch
        {
            KeyDataViewType { RawType: var raw } key when raw == typeof(uint) && key.Count >= 2 && key.Count <= int.MaxValue => (false, key),
            KeyDataViewType key => throw new ArgumentException($"Label column '{label}' of the {dataName} is a key with {key.Count} values; classification needs at least 2.", label),
            var t when t == NumberDataViewType.Single => (true, null),
            var t => throw new ArgumentException($"Label column '{label}' of the {dataName} is {t}; it must be a key type for classification (add mlContext.Transforms.Conversion.MapValueToKey(\"{label}\")) or Single for regression.", label),
        };
    }

    private static DataViewSchema.Column Find(DataViewSchema schema, string name, string dataName) =>
        schema.GetColumnOrNull(name) ?? throw new ArgumentOutOfRangeException(name, $"Column '{name}' not found in the {dataName}; its columns are: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => c.Name))}.");
}
