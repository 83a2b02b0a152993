using Microsoft.ML.Bone.Data;

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

    /// <summary>
    /// The validation set's label as training classes. A validation set usually skips the pipeline's upstream steps
    /// (it is handed over raw), or went through its own <c>MapValueToKey</c>, whose key order can differ: so a raw label
    /// is mapped through the training keys' values, and a key label through its own key values to the training ones.
    /// Labels training never saw are skipped (counted). Types that cannot be matched are an error naming the column.
    /// </summary>
    public static Func<DataViewRowCursor, Func<float?>> ValidationLabel(DataViewSchema schema, string label, bool isRegression, LabelValues? training, DataViewType trainingType)
    {
        var column = Find(schema, label, "validation set");
        if (isRegression)
        {
            if (column.Type != NumberDataViewType.Single)
                throw new ArgumentException($"Label column '{label}' of the validation set is {column.Type}, but training is a regression on Single.", nameof(BoneTextClassificationOptions.ValidationSet));
            return TextClassificationData.OwnLabel(column, isRegression: true);
        }
        var classOf = training!.Names.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => p.i, StringComparer.Ordinal);
        if (column.Type is KeyDataViewType key)
        {
            bool hasValues = column.Annotations.Schema.GetColumnOrNull(AnnotationKinds.KeyValues) is not null;
            if (!hasValues && key.Count != (ulong)training.Count)
                throw new ArgumentException($"Label column '{label}' of the validation set is a key with {key.Count} values and no key values to match by, but training has {training.Count} classes; give the validation set raw labels or map it with the training data's MapValueToKey.", nameof(BoneTextClassificationOptions.ValidationSet));
            // Validation key k → training class, by value (identity when there are no values to compare).
            int?[] map = hasValues
                ? LabelValues.From(column, key).Names.Select(n => classOf.TryGetValue(n, out int c) ? c : (int?)null).ToArray()
                : Enumerable.Range(0, training.Count).Select(i => (int?)i).ToArray();
            return cursor =>
            {
                var get = cursor.GetGetter<uint>(column);
                uint k = 0;
                return () => { get(ref k); return k == 0 || k > map.Length ? null : map[k - 1]; };
            };
        }
        if (column.Type is not (TextDataViewType or NumberDataViewType or BooleanDataViewType))
            throw new ArgumentException($"Label column '{label}' of the validation set is {column.Type}; it must hold the raw label values (as the training data had before MapValueToKey) or keys. Training's label was {trainingType}.", nameof(BoneTextClassificationOptions.ValidationSet));
        return cursor =>
        {
            Func<string?> read = LabelValues.ValueReader(cursor, column) ?? throw new ArgumentException($"Label column '{label}' of the validation set has an unsupported type {column.Type}.", nameof(BoneTextClassificationOptions.ValidationSet));
            return () => read() is { } value && classOf.TryGetValue(value, out int c) ? c : null;
        };
    }

    private static DataViewSchema.Column Find(DataViewSchema schema, string name, string dataName) =>
        schema.GetColumnOrNull(name) ?? throw new ArgumentOutOfRangeException(name, $"Column '{name}' not found in the {dataName}; its columns are: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => c.Name))}.");
}
