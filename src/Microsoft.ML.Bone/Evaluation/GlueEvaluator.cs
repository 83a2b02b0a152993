using Microsoft.ML.Bone.Evaluation;

namespace Microsoft.ML.Bone;

/// <summary>Reads labels and predictions from scored data and computes <see cref="GlueEvaluation"/>.</summary>
internal static class GlueEvaluator
{
    public static GlueEvaluation Evaluate(MLContext ml, IDataView scored, GlueTask task, string label, string score, string predictedLabel)
    {
        if (task == GlueTask.StsB)
        {
            var (labels, scores) = (ReadSingles(scored, label), ReadSingles(scored, score));
            return new GlueEvaluation(task, labels.Length, null, null, null, GlueMetrics.Pearson(labels, scores), GlueMetrics.Spearman(labels, scores),
                null, ml.Regression.Evaluate(scored, label, score));
        }
        // Predictions are the arg-max of the scores, as ML.NET's evaluator takes them, so this works whether or not
        // PredictedLabel was mapped back to values.
        int[] truth = ReadKeys(scored, label), predicted = ReadArgMax(scored, score);
        bool f1 = task is GlueTask.Mrpc or GlueTask.Qqp;
        return new GlueEvaluation(task, truth.Length,
            task == GlueTask.Cola ? null : GlueMetrics.Accuracy(truth, predicted),
            f1 ? GlueMetrics.F1(truth, predicted) : null,
            task == GlueTask.Cola ? GlueMetrics.MatthewsCorrelation(truth, predicted) : null,
            null, null, ml.MulticlassClassification.Evaluate(scored, label, score, predictedLabel), null);
    }

    private static DataViewSchema.Column Column(IDataView data, string name) =>
        data.Schema.GetColumnOrNull(name) ?? throw new ArgumentOutOfRangeException(nameof(name), name, $"Column '{name}' not found in the scored data (columns: {string.Join(", ", data.Schema.Select(c => c.Name))}).");

    // Keys are 1-based with 0 for missing; GLUE classes are 0-based. Rows with a missing label are skipped.
    private static int[] ReadKeys(IDataView data, string name)
    {
        var column = Column(data, name);
        if (column.Type is not KeyDataViewType { RawType: var raw } || raw != typeof(uint))
            throw new ArgumentException($"Column '{name}' must be a key type (as MapValueToKey produces), got {column.Type}.", nameof(name));
        var values = new List<int>();
        using var cursor = data.GetRowCursor([column]);
        var get = cursor.GetGetter<uint>(column);
        uint v = 0;
        while (cursor.MoveNext()) { get(ref v); values.Add((int)v - 1); }
        return [.. values];
    }

    private static int[] ReadArgMax(IDataView data, string name)
    {
        var column = Column(data, name);
        if (column.Type is not VectorDataViewType { ItemType: var item } || item != NumberDataViewType.Single)
            throw new ArgumentException($"Column '{name}' must be a vector of Single class scores, got {column.Type}.", nameof(name));
        var values = new List<int>();
        using var cursor = data.GetRowCursor([column]);
        var get = cursor.GetGetter<VBuffer<float>>(column);
        VBuffer<float> v = default;
        while (cursor.MoveNext())
        {
            get(ref v);
            float[] dense = v.DenseValues().ToArray();
            values.Add(Array.IndexOf(dense, dense.Max()));
        }
        return [.. values];
    }

    private static double[] ReadSingles(IDataView data, string name)
    {
        var column = Column(data, name);
        if (column.Type != NumberDataViewType.Single) throw new ArgumentException($"Column '{name}' must be Single for STS-B, got {column.Type}.", nameof(name));
        var values = new List<double>();
        using var cursor = data.GetRowCursor([column]);
        var get = cursor.GetGetter<float>(column);
        float v = 0;
        while (cursor.MoveNext()) { get(ref v); values.Add(v); }
        return [.. values];
    }
}
