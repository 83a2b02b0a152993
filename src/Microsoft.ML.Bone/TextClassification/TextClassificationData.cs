using Microsoft.ML.Bone.Tokenization;

namespace Microsoft.ML.Bone;

/// <summary>Texts and targets read from a data view: class index (key − 1) or regression value; rows with a missing label are skipped.</summary>
internal sealed class TextClassificationData
{
    private readonly List<string> _first = [];
    private readonly List<string?> _second = [];

    public List<float> Targets { get; } = [];

    public int Count => Targets.Count;

    public static TextClassificationData Read(IDataView data, BoneTextClassificationOptions o, bool isRegression, string dataName)
    {
        var result = new TextClassificationData();
        var schema = data.Schema;
        var columns = TextClassificationColumns.TextColumns(o.Sentence1ColumnName, o.Sentence2ColumnName).Select(n => schema[n]).Append(schema[o.LabelColumnName]).ToList();
        using var cursor = data.GetRowCursor(columns);
        var first = cursor.GetGetter<ReadOnlyMemory<char>>(schema[o.Sentence1ColumnName]);
        var second = o.Sentence2ColumnName is { } s2 ? cursor.GetGetter<ReadOnlyMemory<char>>(schema[s2]) : null;
        var key = isRegression ? null : cursor.GetGetter<uint>(schema[o.LabelColumnName]);
        var value = isRegression ? cursor.GetGetter<float>(schema[o.LabelColumnName]) : null;
        ReadOnlyMemory<char> a = default, b = default;
        uint k = 0;
        float v = 0;
        while (cursor.MoveNext())
        {
            o.CancellationToken.ThrowIfCancellationRequested();
            float target;
            if (key is not null)
            {
                key(ref k);
                if (k == 0) continue;
                target = k - 1;
            }
            else
            {
                value!(ref v);
                if (float.IsNaN(v)) continue;
                target = v;
            }
            first(ref a);
            second?.Invoke(ref b);
            result._first.Add(a.ToString());
            result._second.Add(second is null ? null : b.ToString());
            result.Targets.Add(target);
        }
        return result;
    }

    public int[][] Encode(ISequenceTokenizer tokenizer, int maxLength) =>
        Enumerable.Range(0, Count).Select(i => tokenizer.Encode(_first[i], _second[i], maxLength)).ToArray();
}
