using Microsoft.ML.Bone.Evaluation;

namespace Microsoft.ML.Bone.Tests.Evaluation;

[TestClass]
public sealed class GlueMetricsTests
{
    private static readonly int[] Labels = [1, 1, 1, 0, 0, 1, 0, 1, 1, 0];
    private static readonly int[] Predictions = [1, 0, 1, 0, 1, 1, 0, 1, 0, 0];

    [TestMethod]
    public void BinaryMetricsFromTheConfusionMatrix()
    {
        // TP = 4, FN = 2, FP = 1, TN = 3.
        Assert.AreEqual(0.7, GlueMetrics.Accuracy(Labels, Predictions), 1e-12);
        Assert.AreEqual(2.0 * 4 / (2 * 4 + 1 + 2), GlueMetrics.F1(Labels, Predictions), 1e-12);
        double mcc = (4.0 * 3 - 1 * 2) / Math.Sqrt((4 + 1) * (4 + 2) * (3 + 1) * (3 + 2));
        Assert.AreEqual(mcc, GlueMetrics.MatthewsCorrelation(Labels, Predictions), 1e-12);
    }

    [TestMethod]
    public void MatthewsIsZeroForAConstantPredictorAndOneWhenPerfect()
    {
        Assert.AreEqual(0, GlueMetrics.MatthewsCorrelation(Labels, Enumerable.Repeat(1, 10).ToArray()));
        Assert.AreEqual(1, GlueMetrics.MatthewsCorrelation(Labels, Labels), 1e-12);
        Assert.AreEqual(-1, GlueMetrics.MatthewsCorrelation(Labels, Labels.Select(l => 1 - l).ToArray()), 1e-12);
    }

    [TestMethod]
    public void MulticlassMatthewsMatchesTheCovarianceForm()
    {
        int[] y = [0, 1, 2, 2, 1, 0, 2, 1];
        int[] p = [0, 2, 2, 1, 1, 0, 2, 0];
        // MCC = cov(Y, P) / sqrt(cov(Y, Y) cov(P, P)) with one-hot Y, P (Gorodkin 2004), computed directly.
        int n = y.Length, k = 3;
        double Cov(int[] a, int[] b)
        {
            double s = 0;
            for (int c = 0; c < k; c++)
            {
                double ma = a.Count(v => v == c) / (double)n, mb = b.Count(v => v == c) / (double)n;
                for (int i = 0; i < n; i++) s += ((a[i] == c ? 1 : 0) - ma) * ((b[i] == c ? 1 : 0) - mb);
            }
            return s;
        }
        Assert.AreEqual(Cov(y, p) / Math.Sqrt(Cov(y, y) * Cov(p, p)), GlueMetrics.MatthewsCorrelation(y, p), 1e-12);
    }

    [TestMethod]
    public void CorrelationsWithTies()
    {
        double[] x = [1, 2, 2, 4, 5];
        double[] y = [2, 1, 4, 3, 5];
        // Pearson by hand: means 2.8 and 3.
        double sxy = (-1.8 * -1) + (-0.8 * -2) + (-0.8 * 1) + (1.2 * 0) + (2.2 * 2);
        double sxx = 3.24 + 0.64 + 0.64 + 1.44 + 4.84, syy = 1 + 4 + 1 + 0 + 4;
        Assert.AreEqual(sxy / Math.Sqrt(sxx * syy), GlueMetrics.Pearson(x, y), 1e-12);
        // Ranks of x with the tie averaged: 1, 2.5, 2.5, 4, 5; ranks of y: 2, 1, 4, 3, 5.
        Assert.AreEqual(GlueMetrics.Pearson([1, 2.5, 2.5, 4, 5], [2, 1, 4, 3, 5]), GlueMetrics.Spearman(x, y), 1e-12);
        Assert.AreEqual(1, GlueMetrics.Spearman([1, 2, 3], [10, 100, 1000]), 1e-12);
    }
}
