namespace Microsoft.ML.Bone.Evaluation;

/// <summary>The GLUE tasks and the official metrics each one reports.</summary>
public enum GlueTask
{
    /// <summary>Sentiment: accuracy.</summary>
    Sst2,
    /// <summary>Acceptability: Matthews correlation.</summary>
    Cola,
    /// <summary>Paraphrase: accuracy and F1.</summary>
    Mrpc,
    /// <summary>Question entailment: accuracy.</summary>
    Qnli,
    /// <summary>Entailment: accuracy.</summary>
    Rte,
    /// <summary>Three-way entailment: accuracy.</summary>
    Mnli,
    /// <summary>Question pairs: accuracy and F1.</summary>
    Qqp,
    /// <summary>Similarity (regression): Pearson and Spearman correlation.</summary>
    StsB,
}

/// <summary>Metric formulas used by GLUE, on plain arrays (positive class = 1 for F1).</summary>
public static class GlueMetrics
{
    /// <summary>Share of predictions equal to the label.</summary>
    public static double Accuracy(IReadOnlyList<int> labels, IReadOnlyList<int> predictions)
    {
        CheckSameLength(labels.Count, predictions.Count);
        return labels.Count == 0 ? 0 : labels.Where((l, i) => l == predictions[i]).Count() / (double)labels.Count;
    }

    /// <summary>F1 of the positive class (label 1): 2·TP / (2·TP + FP + FN); 0 when there is no positive at all.</summary>
    public static double F1(IReadOnlyList<int> labels, IReadOnlyList<int> predictions)
    {
        CheckSameLength(labels.Count, predictions.Count);
        long tp = 0, fp = 0, fn = 0;
        for (int i = 0; i < labels.Count; i++)
        {
            if (predictions[i] == 1 && labels[i] == 1) tp++;
            else if (predictions[i] == 1) fp++;
            else if (labels[i] == 1) fn++;
        }
        return tp == 0 ? 0 : 2.0 * tp / (2.0 * tp + fp + fn);
    }

    /// <summary>
    /// Matthews correlation coefficient for any number of classes (Gorodkin's R_K, as scikit-learn computes it);
    /// 0 when a marginal is constant.
    /// </summary>
    public static double MatthewsCorrelation(IReadOnlyList<int> labels, IReadOnlyList<int> predictions)
    {
        CheckSameLength(labels.Count, predictions.Count);
        int classes = labels.Concat(predictions).DefaultIfEmpty(0).Max() + 1;
        var t = new double[classes];
        var p = new double[classes];
        double correct = 0, n = labels.Count;
        for (int i = 0; i < labels.Count; i++)
        {
            t[labels[i]]++;
            p[predictions[i]]++;
            if (labels[i] == predictions[i]) correct++;
        }
        double tp = 0, tt = 0, pp = 0;
        for (int k = 0; k < classes; k++) { tp += t[k] * p[k]; tt += t[k] * t[k]; pp += p[k] * p[k]; }
        double denominator = Math.Sqrt((n * n - pp) * (n * n - tt));
        return denominator == 0 ? 0 : (correct * n - tp) / denominator;
    }

    /// <summary>Pearson's linear correlation.</summary>
    public static double Pearson(IReadOnlyList<double> x, IReadOnlyList<double> y)
    {
        CheckSameLength(x.Count, y.Count);
        if (x.Count < 2) return 0;
        double mx = x.Average(), my = y.Average(), sxy = 0, sxx = 0, syy = 0;
        for (int i = 0; i < x.Count; i++)
        {
            sxy += (x[i] - mx) * (y[i] - my);
            sxx += (x[i] - mx) * (x[i] - mx);
            syy += (y[i] - my) * (y[i] - my);
        }
        return sxx == 0 || syy == 0 ? 0 : sxy / Math.Sqrt(sxx * syy);
    }

    /// <summary>Spearman's rank correlation: Pearson on ranks, ties sharing their average rank.</summary>
    public static double Spearman(IReadOnlyList<double> x, IReadOnlyList<double> y) => Pearson(Ranks(x), Ranks(y));

    private static double[] Ranks(IReadOnlyList<double> values)
    {
        int[] order = Enumerable.Range(0, values.Count).OrderBy(i => values[i]).ToArray();
        var ranks = new double[values.Count];
        for (int start = 0; start < order.Length;)
        {
            int end = start;
            while (end + 1 < order.Length && values[order[end + 1]] == values[order[start]]) end++;
            double rank = (start + end) / 2.0 + 1;
            for (int k = start; k <= end; k++) ranks[order[k]] = rank;
            start = end + 1;
        }
        return ranks;
    }

    private static void CheckSameLength(int a, int b)
    {
        if (a != b) throw new ArgumentException($"Labels ({a}) and predictions ({b}) differ in length.");
    }
}
