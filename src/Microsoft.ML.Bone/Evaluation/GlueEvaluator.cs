using Microsoft.ML.Bone.Evaluation;

namespace Microsoft.ML.Bone;

/// <summary>Reads labels and predictions from scored data and computes <see cref="GlueEvaluation"/>.</summary>
internal static class GlueEvaluator
{
    public static GlueEvaluation Evaluate(MLContext ml, IDataView scored, GlueTask task, string label, string score, string predictedLabel)
    {
        // The model runs once: the scored columns are cached, then GLUE's metrics and ML.NET's evaluator both read the cache.
        string[] columns = scored.Schema.GetColumnOrNull(predictedLabel) is null || task == GlueTask.StsB ? [label, score] : [label, score, predictedLabel];
        foreach (string c in columns) Column(scored, c);
        IDataView cached = ml.Data.Cache(scored, columns);
        if (task == GlueTask.StsB)
        {
            var (labels, scores, skipped) = ReadRegression(cached, label, score);
            return new GlueEvaluation(task, labels.Length, null, null, null, GlueMetrics.Pearson(labels, scores), GlueMetrics.Spearman(labels, scores),
                null, ml.Regression.Evaluate(cached, label, score), skipped);
        }
        // Predictions are the arg-max of the scores, as ML.NET's evaluator takes them, so this works whether or not
        // PredictedLabel was mapped back to values.
        var (truth, predicted, missing) = ReadClassification(cached, label, score, columns);
        bool f1 = task is GlueTask.Mrpc or GlueTask.Qqp;
        return new GlueEvaluation(task, truth.Length,
            task == GlueTask.Cola ? null : GlueMetrics.Accuracy(truth, predicted),
            f1 ? GlueMetrics.F1(truth, predicted) : null,
            task == GlueTask.Cola ? GlueMetrics.MatthewsCorrelation(truth, predicted) : null,
            null, null, ml.MulticlassClassification.Evaluate(cached, label, score, predictedLabel), null, missing);
    }

    private static DataViewSchema.Column Column(IDataView data, string name) =>
        data.Schema.GetColumnOrNull(name) ?? throw new ArgumentOutOfRangeException(nameof(name), name, $"Column '{name}' not found in the scored data (columns: {string.Join(", ", data.Schema.Select(c => c.Name))}).");

    // Keys are 1-based with 0 for missing; GLUE classes are 0-based. Rows with a missing label are skipped and counted.
    private static (int[] Truth, int[] Predicted, int Skipped) ReadClassification(IDataView data, string labelName, string scoreName, string[] all)
    {
        var label = Column(data, labelName);
        if (label.Type is not KeyDataViewType { RawType: var raw } || raw != typeof(uint))
            throw new ArgumentException($"Column '{labelName}' must be a key type (as MapValueToKey produces), got {label.Type}.", nameof(labelName));
        var score = Column(data, scoreName);
        if (score.Type is not VectorDataViewType { ItemType: var item } || item != NumberDataViewType.Single)
            throw new ArgumentException($"Column '{scoreName}' must be a vector of Single class scores, got {score.Type}.", nameof(scoreName));
        var truth = new List<int>();
        var predicted = new List<int>();
        int skipped = 0;
        using var cursor = data.GetRowCursor(all.Select(n => data.Schema[n]));
        var getLabel = cursor.GetGetter<uint>(label);
        var getScore = cursor.GetGetter<VBuffer<float>>(score);
        uint k = 0;
        VBuffer<float> v = default;
        while (cursor.MoveNext())
        {
            getLabel(ref k);
            if (k == 0) { skipped++; continue; }
            getScore(ref v);
            float[] dense = v.DenseValues().ToArray();
            truth.Add((int)k - 1);
            predicted.Add(Array.IndexOf(dense, dense.Max()));
        }
        return ([.. truth], [.. predicted], skipped);
    }

    private static (double[] Labels, double[] Scores, int Skipped) ReadRegression(IDataView data, string labelName, string scoreName)
    {
        var label = Column(data, labelName);
        var score = Column(data, scoreName);
        foreach (var (c, n) in new[] { (label, labelName), (score, scoreName) })
            if (c.Type != NumberDataViewType.Single) throw new ArgumentException($"Column '{n}' must be Single for STS-B, got {c.Type}.", nameof(labelName));
        var labels = new List<double>();
        var scores = new List<double>();
        int skipped = 0;
        using var cursor = data.GetRowCursor([label, score]);
        var getLabel = cursor.GetGetter<float>(label);
        var getScore = cursor.GetGetter<float>(score);
        float l = 0, s = 0;
        while (cursor.MoveNext())
        {
            getLabel(ref l);
            if (float.IsNaN(l)) { skipped++; continue; }
            getScore(ref s);
            labels.Add(l);
            scores.Add(s);
        }
        return ([.. labels], [.. scores], skipped);
    }
}
