using Microsoft.ML.Bone.Adapters;
using TorchSharp;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.Adapters;

[TestClass]
public sealed class BatLayerTests
{
    public static IEnumerable<object[]> Cases =>
        from shape in new[] { (4, 6, 2), (6, 4, 2), (4, 4, 2), (8, 12, 4) }
        from grouping in new[] { BatGrouping.OutputBlock, BatGrouping.InputBlock }
        from product in new[] { BatProduct.Matrix, BatProduct.Hadamard }
        select new object[] { shape.Item1, shape.Item2, shape.Item3, grouping, product };

    /// <summary>ΔW written out per element: for block (i, j), ΔW_ij = W_ij·B + B or W_ij ⊙ B + B, B = B_i or B_j.</summary>
    private static double[,] ClosedFormDelta(double[,] w, double[,,] b, int r, BatGrouping grouping, BatProduct product)
    {
        int outF = w.GetLength(0), inF = w.GetLength(1);
        var d = new double[outF, inF];
        for (int i = 0; i < outF / r; i++)
            for (int j = 0; j < inF / r; j++)
            {
                int g = grouping == BatGrouping.OutputBlock ? i : j;
                for (int a = 0; a < r; a++)
                    for (int c2 = 0; c2 < r; c2++)
                    {
                        double s = b[g, a, c2];
                        if (product == BatProduct.Matrix)
                            for (int c = 0; c < r; c++) s += w[i * r + a, j * r + c] * b[g, c, c2];
                        else
                            s += w[i * r + a, j * r + c2] * b[g, a, c2];
                        d[i * r + a, j * r + c2] = s;
                    }
            }
        return d;
    }

    private static (AdaptableLinear Layer, BatLayer Bat, double[,,] Blocks) Build(int outF, int inF, int r, BatGrouping grouping, BatProduct product, bool checkpointing = false)
    {
        var layer = Layer(outF, inF);
        var bat = new BatLayer("layer", layer, r, grouping, product, checkpointing);
        double[,,] blocks = BatBlocks(grouping == BatGrouping.OutputBlock ? outF / r : inF / r, r);
        using (no_grad()) bat.miss_block.copy_(ToTensor(blocks));
        layer.Attach(bat);
        return (layer, bat, blocks);
    }

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void ForwardEqualsDenseFormula(int outF, int inF, int r, BatGrouping grouping, BatProduct product)
    {
        using var scope = NewDisposeScope();
        var (layer, _, blocks) = Build(outF, inF, r, grouping, product);
        double[,] w = Weight(outF, inF);
        double[,] x = Input(3, inF);
        double[,] expected = Linear(x, Add(w, ClosedFormDelta(w, blocks, r, grouping, product)), Bias(outF));
        AssertClose(expected, layer.call(ToTensor(x)), 1e-5, "Bat forward");
    }

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void MergeThenUnmergeThroughInverseRestoresWeight(int outF, int inF, int r, BatGrouping grouping, BatProduct product)
    {
        using var scope = NewDisposeScope();
        var (layer, _, _) = Build(outF, inF, r, grouping, product);
        Tensor x = ToTensor(Input(3, inF));
        Tensor unmerged = layer.call(x).detach().clone();

        layer.Merge();
        AssertClose(unmerged, layer.call(x), 1e-5, "merged output");
        layer.Unmerge();
        AssertClose(Weight(outF, inF), layer.weight, 1e-5, "W after merge → unmerge");
        AssertClose(unmerged, layer.call(x), 1e-5, "output after unmerge");
    }

    [TestMethod]
    public void PeftAndRwkvOrientationsDiffer()
    {
        using var scope = NewDisposeScope();
        Tensor w = ToTensor(Weight(4, 4));
        Tensor b = ToTensor(BatBlocks(2, 2));
        Tensor peft = BatMath.DeltaWeight(w, b, BatGrouping.OutputBlock, BatProduct.Matrix);
        Tensor rwkv = BatMath.DeltaWeight(w, b, BatGrouping.InputBlock, BatProduct.Matrix);
        Assert.IsTrue((peft - rwkv).abs().max().item<float>() > 1e-3, "same tensor, different block pairing, must give different ΔW");
    }

    [TestMethod]
    [DynamicData(nameof(Cases))]
    public void CheckpointedGradientsEqualPlainAutograd(int outF, int inF, int r, BatGrouping grouping, BatProduct product)
    {
        using var scope = NewDisposeScope();
        var (plain, plainBat, _) = Build(outF, inF, r, grouping, product);
        var (ckpt, ckptBat, _) = Build(outF, inF, r, grouping, product, checkpointing: true);
        Tensor xPlain = ToTensor(Input(6, inF)).reshape(2, 3, inF).requires_grad_(true);
        Tensor xCkpt = xPlain.detach().clone().requires_grad_(true);
        Tensor weights = arange(2 * 3 * outF, dtype: ScalarType.Float32).reshape(2, 3, outF).sin();

        Tensor yPlain = plain.call(xPlain);
        Tensor yCkpt = ckpt.call(xCkpt);
        AssertClose(yPlain, yCkpt, 1e-6, "forward");
        (yPlain * weights).sum().backward();
        (yCkpt * weights).sum().backward();

        AssertClose(plainBat.miss_block.grad!, ckptBat.miss_block.grad!, 1e-4, "dL/dB");
        AssertClose(xPlain.grad!, xCkpt.grad!, 1e-5, "dL/dx");
        Assert.IsNull(ckpt.weight.grad, "the frozen base weight gets no gradient");
    }

    [TestMethod]
    public void CheckpointedBackwardDoesNotKeepEachLayersGradientsUntilTheStepEnds()
    {
        // The gradients each checkpointed backward returns used to be moved to the caller's scope, keeping one
        // input-sized gradient per layer alive to the end of the step. What backward adds to the step's scope must not
        // grow with depth.
        long Growth(int depth)
        {
            using var scope = NewDisposeScope();
            var layers = Enumerable.Range(0, depth).Select(_ => Build(16, 16, 4, BatGrouping.OutputBlock, BatProduct.Matrix, checkpointing: true).Layer).ToList();
            Tensor h = ToTensor(Input(64, 16)).requires_grad_(true);
            foreach (var layer in layers) h = layer.call(h).tanh();
            Tensor loss = h.sum();
            long before = ScopeBytes(scope);
            loss.backward();
            return ScopeBytes(scope) - before;
        }
        long shallow = Growth(2), deep = Growth(8);
        long oneGradient = 64 * 16 * sizeof(float);
        Assert.IsTrue(deep - shallow < oneGradient, $"backward kept {deep - shallow} more bytes for 6 more layers (one layer's input gradient is {oneGradient})");
    }

    [TestMethod]
    public void BlockGradientMatchesClosedForm()
    {
        // PEFT orientation: dL/dB_i = Σ_j (W_ijᵀ·G_ij + G_ij) with G = dL/dW' = Σ_n g_nᵀ·x_n.
        using var scope = NewDisposeScope();
        const int outF = 4, inF = 6, r = 2;
        var (layer, bat, _) = Build(outF, inF, r, BatGrouping.OutputBlock, BatProduct.Matrix);
        double[,] x = Input(3, inF);
        var g = new double[3, outF];
        for (int n = 0; n < 3; n++) for (int o = 0; o < outF; o++) g[n, o] = Math.Cos(n + 0.5 * o);
        (layer.call(ToTensor(x)) * ToTensor(g)).sum().backward();

        double[,] w = Weight(outF, inF);
        var gw = new double[outF, inF];
        for (int n = 0; n < 3; n++) for (int o = 0; o < outF; o++) for (int k = 0; k < inF; k++) gw[o, k] += g[n, o] * x[n, k];
        var expected = new double[outF / r * r, r];
        for (int i = 0; i < outF / r; i++)
            for (int j = 0; j < inF / r; j++)
                for (int c = 0; c < r; c++)
                    for (int c2 = 0; c2 < r; c2++)
                    {
                        double s = 0;
                        for (int a = 0; a < r; a++) s += (w[i * r + a, j * r + c] + (a == c ? 1 : 0)) * gw[i * r + a, j * r + c2];
                        expected[i * r + c, c2] += s;
                    }
        AssertClose(expected, bat.miss_block.grad!.reshape(outF / r * r, r), 1e-5, "dL/dB");
    }

    [TestMethod]
    public void RankThatDoesNotDivideTheWeightIsRejected()
    {
        using var scope = NewDisposeScope();
        var layer = Layer(6, 10);
        var e = Assert.ThrowsExactly<ArgumentException>(() => new BatLayer("model.layers.0.mlp.down_proj", layer, 4, BatGrouping.OutputBlock, BatProduct.Matrix, false));
        StringAssert.Contains(e.Message, "model.layers.0.mlp.down_proj");
        StringAssert.Contains(e.Message, "[r, r] blocks");
    }

    [TestMethod]
    public void Bf16BaseRunsAdapterInFloat32AndReturnsBf16()
    {
        using var scope = NewDisposeScope();
        var layer = Layer(4, 4, dtype: ScalarType.BFloat16);
        var bat = new BatLayer("layer", layer, 2, BatGrouping.OutputBlock, BatProduct.Matrix, false);
        using (no_grad()) bat.miss_block.copy_(ToTensor(BatBlocks(2, 2)));
        layer.Attach(bat);
        Tensor x = ToTensor(Input(2, 4)).to(ScalarType.BFloat16);
        Tensor y = layer.call(x);
        Assert.AreEqual(ScalarType.BFloat16, y.dtype);
        // Reference: the same arithmetic on the bf16-rounded weight, in float32.
        double[,] w = new double[4, 4];
        float[] wb = layer.weight.to(ScalarType.Float32).data<float>().ToArray();
        for (int i = 0; i < 16; i++) w[i / 4, i % 4] = wb[i];
        float[] xb = x.to(ScalarType.Float32).data<float>().ToArray();
        double[,] xr = new double[2, 4];
        for (int i = 0; i < 8; i++) xr[i / 4, i % 4] = xb[i];
        float[] bb = layer.bias!.to(ScalarType.Float32).data<float>().ToArray();
        double[,] expected = Linear(xr, Add(w, ClosedFormDelta(w, BatBlocks(2, 2), 2, BatGrouping.OutputBlock, BatProduct.Matrix)), bb.Select(v => (double)v).ToArray());
        AssertClose(expected, y, 2e-2, "bf16 output (one bf16 rounding)");
    }
}

[TestClass]
public sealed class BatMathFastPathTests
{
    [TestMethod]
    public void TheBatchedMergeAndItsGradientEqualTheBlockForm()
    {
        using var scope = NewDisposeScope();
        var generator = new TorchSharp.torch.Generator(5);
        Tensor w = randn([12, 8], generator: generator), blocks = randn([3, 4, 4], generator: generator).requires_grad_(true);
        // The general form: W + (W_blk·B + B) through ToBlocks / FromBlocks.
        Tensor reference = w + BatMath.DeltaWeight(w, blocks, BatGrouping.OutputBlock, BatProduct.Matrix);
        Tensor fast = BatMath.MergedWeight(w, blocks, BatGrouping.OutputBlock, BatProduct.Matrix);
        Fixtures.AssertClose(reference, fast, 1e-5, "merged weight");
        Tensor upstream = randn([12, 8], generator: generator);
        Tensor expected = autograd.grad([reference], [blocks], [upstream])[0];
        Fixtures.AssertClose(expected, BatMath.MergedWeightGradient(w, upstream, 4), 1e-5, "dL/dB in closed form");
    }
}
