using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Nn;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.Adapters;

/// <summary>Deterministic weights and inputs (no RNG) and managed reference arithmetic for adapter tests.</summary>
internal static class Fixtures
{
    /// <summary>Bytes of the live tensors <paramref name="scope"/> holds.</summary>
    public static long ScopeBytes(DisposeScope scope) =>
        scope.DisposablesView.OfType<Tensor>().Where(t => !t.IsInvalid).Sum(t => t.NumberOfElements * t.ElementSize);

    public static double[,] Weight(int outF, int inF)
    {
        var w = new double[outF, inF];
        for (int o = 0; o < outF; o++)
            for (int k = 0; k < inF; k++)
                w[o, k] = Math.Round(Math.Sin(0.37 * (o * inF + k) + 0.1), 6);
        return w;
    }

    public static double[] Bias(int outF) => Enumerable.Range(0, outF).Select(o => 0.01 * o).ToArray();

    public static double[,] BoneBlock(int r, int outF)
    {
        var b = new double[r, outF];
        for (int c = 0; c < r; c++)
            for (int o = 0; o < outF; o++)
                b[c, o] = 0.1 * ((c * outF + o) % 7) - 0.3;
        return b;
    }

    public static double[,,] BatBlocks(int count, int r)
    {
        var b = new double[count, r, r];
        for (int i = 0; i < count; i++)
            for (int a = 0; a < r; a++)
                for (int c = 0; c < r; c++)
                    b[i, a, c] = 0.05 * (((i * r + a) * r + c) % 5) - 0.1;
        return b;
    }

    /// <summary>Inputs of shape [rows, inF]: x[n, k] = 0.5·cos(0.9·k + n).</summary>
    public static double[,] Input(int rows, int inF)
    {
        var x = new double[rows, inF];
        for (int n = 0; n < rows; n++)
            for (int k = 0; k < inF; k++)
                x[n, k] = 0.5 * Math.Cos(0.9 * k + n);
        return x;
    }

    public static Tensor ToTensor(double[,] a, ScalarType dtype = ScalarType.Float32) =>
        tensor(a.Cast<double>().ToArray(), [a.GetLength(0), a.GetLength(1)]).to(dtype);

    public static Tensor ToTensor(double[,,] a) =>
        tensor(a.Cast<double>().ToArray(), [a.GetLength(0), a.GetLength(1), a.GetLength(2)]).to(ScalarType.Float32);

    public static Tensor ToTensor(double[] a) => tensor(a).to(ScalarType.Float32);

    /// <summary>A layer with the fixture weight and bias.</summary>
    public static AdaptableLinear Layer(int outF, int inF, bool bias = true, ScalarType dtype = ScalarType.Float32)
    {
        var layer = new AdaptableLinear(inF, outF, bias, new ParameterPlacement(dtype));
        using var noGrad = no_grad();
        layer.weight.copy_(ToTensor(Weight(outF, inF)));
        layer.bias?.copy_(ToTensor(Bias(outF)));
        return layer;
    }

    /// <summary>
    /// Fills every parameter of <paramref name="module"/> with values derived from <paramref name="seed"/> alone.
    /// Tests run in parallel and share torch's global generator, so seeding it does not make a model reproducible.
    /// </summary>
    public static T Deterministic<T>(T module, int seed = 1) where T : nn.Module
    {
        using var noGrad = no_grad();
        int i = 0;
        foreach (var (_, p) in module.named_parameters())
        {
            using var values = (arange(p.numel(), dtype: ScalarType.Float64) * 0.37 + seed + 1.7 * i++).sin() * 0.3;
            p.copy_(values.reshape(p.shape));
        }
        return module;
    }

    /// <summary>y = x·Wᵀ + b in double precision.</summary>
    public static double[,] Linear(double[,] x, double[,] w, double[]? b)
    {
        int rows = x.GetLength(0), inF = x.GetLength(1), outF = w.GetLength(0);
        var y = new double[rows, outF];
        for (int n = 0; n < rows; n++)
            for (int o = 0; o < outF; o++)
            {
                double s = b?[o] ?? 0;
                for (int k = 0; k < inF; k++) s += x[n, k] * w[o, k];
                y[n, o] = s;
            }
        return y;
    }

    public static double[,] Add(double[,] a, double[,] b)
    {
        var c = (double[,])a.Clone();
        for (int i = 0; i < a.GetLength(0); i++)
            for (int j = 0; j < a.GetLength(1); j++)
                c[i, j] += b[i, j];
        return c;
    }

    public static void AssertClose(double[,] expected, Tensor actual, double tolerance, string what = "")
    {
        float[] got = actual.to(ScalarType.Float32).contiguous().data<float>().ToArray();
        int cols = expected.GetLength(1);
        Assert.AreEqual(expected.Length, got.Length, $"{what}: element count");
        for (int i = 0; i < expected.GetLength(0); i++)
            for (int j = 0; j < cols; j++)
                Assert.AreEqual(expected[i, j], got[i * cols + j], tolerance, $"{what}: element [{i}, {j}]");
    }

    public static void AssertClose(Tensor expected, Tensor actual, double tolerance, string what = "")
    {
        CollectionAssert.AreEqual(expected.shape, actual.shape, $"{what}: shape");
        double maxDiff = (expected.to(ScalarType.Float64) - actual.to(ScalarType.Float64)).abs().max().item<double>();
        Assert.IsTrue(maxDiff <= tolerance, $"{what}: max |difference| {maxDiff:G4} > {tolerance:G4}");
    }
}
