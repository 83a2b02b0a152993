using Microsoft.ML.Bone.Tokenization;

namespace Microsoft.ML.Bone;

/// <summary>Texts and targets read from a data view: class index (key − 1) or regression value; rows with a missing label are skipped.</summary>
internal sealed class TextClassificationData
{
    private readonly List<string> _first = [];
    private readonly List<string?> _second = [];

    public List<float> Targets { get; } = [];

    public int Count => Targets.Count;

    /// <summary>
    /// Reads the text columns and targets; <paramref name="target"/> turns the label of the current row into the class
    /// index (or regression value), or null to skip the row.
    /// </summary>
    public static TextClassificationData Read(IDataView data, BoneTextClassificationOptions o, Func<DataViewRowCursor, Func<float?>> target, string dataName)
    {
        var result = new TextClassificationData();
        var schema = data.Schema;
        var columns = TextClassificationColumns.TextColumns(o.Sentence1ColumnName, o.Sentence2ColumnName).Select(n => schema[n]).Append(schema[o.LabelColumnName]).ToList();
        using var cursor = data.GetRowCursor(columns);
        var first = cursor.GetGetter<ReadOnlyMemory<char>>(schema[o.Sentence1ColumnName]);
        var second = o.Sentence2ColumnName is { } s2 ? cursor.GetGetter<ReadOnlyMemory<char>>(schema[s2]) : null;
        Func<float?> label = target(cursor);
        ReadOnlyMemory<char> a = default, b = default;
        while (cursor.MoveNext())
        {
            o.CancellationToken.ThrowIfCancellationRequested();
            if (label() is not { } value)
            {
                result.Skipped++;
                continue;
            }
            first(ref a);
            second?.Invoke(ref b);
            result._first.Add(a.ToString());
            result._second.Add(second is null ? null : b.ToString());
            result.Targets.Add(value);
        }
        return result;
    }

    /// <summary>Rows left out because their label was missing (or, for validation, a class training never saw).</summary>
    public int Skipped { get; private set; }

    /// <summary>The training data's own label: key k is class k − 1 (0 is missing), or the regression value (NaN is missing).</summary>
    public static Func<DataViewRowCursor, Func<float?>> OwnLabel(DataViewSchema.Column label, bool isRegression) => cursor =>
    {
        if (isRegression)
        {
            var value = cursor.GetGetter<float>(label);
            float v = 0;
            return () => { value(ref v); return float.IsNaN(v) ? null : v; };
        }
        var key = cursor.GetGetter<uint>(label);
        uint k = 0;
        return () => { key(ref k); return k == 0 ? null : k - 1; };
    };

    /// <summary>Token ids of every row, at most <paramref name="maxLength"/> long, and how many rows were cut to fit.</summary>
    public (int[][] Ids, int Truncated) Encode(ISequenceTokenizer tokenizer, int maxLength)
    {
        var ids = new int[Count][];
        int truncated = 0;
        for (int i = 0; i < Count; i++)
        {
            (ids[i], int fullLength) = tokenizer.EncodeCounting(_first[i], _second[i], maxLength);
            if (fullLength > maxLength) truncated++;
        }
        return (ids, truncated);
    }
}
