using Microsoft.ML.Bone.Adapters;
using TorchSharp;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.Adapters;

[TestClass]
public sealed class BoneLayerTests
{
    // (out, in, r): divisible, non-divisible, odd, and r > in.
    public static IEnumerable<object[]> Shapes => [[6, 8, 4], [5, 10, 4], [3, 7, 2], [4, 3, 4]];

    /// <summary>ΔW[o, k] = bone[k mod r, o], written out element by element.</summary>
    private static double[,] ClosedFormDelta(double[,] bone, int inF)
    {
        int r = bone.GetLength(0), outF = bone.GetLength(1);
        var d = new double[outF, inF];
        for (int o = 0; o < outF; o++)
            for (int k = 0; k < inF; k++)
                d[o, k] = bone[k % r, o];
        return d;
    }

    private static BoneLayer AttachBone(AdaptableLinear layer, double[,] bone)
    {
        var adapter = new BoneLayer("layer", layer, bone.GetLength(0));
        using (no_grad()) adapter.miss_block.copy_(ToTensor(bone));
        layer.Attach(adapter);
        return adapter;
    }

    [TestMethod]
    [DynamicData(nameof(Shapes))]
    public void ForwardEqualsDenseClosedForm(int outF, int inF, int r)
    {
        using var scope = NewDisposeScope();
        var layer = Layer(outF, inF);
        double[,] bone = BoneBlock(r, outF);
        AttachBone(layer, bone);
        double[,] x = Input(5, inF);

        double[,] expected = Linear(x, Add(Weight(outF, inF), ClosedFormDelta(bone, inF)), Bias(outF));
        AssertClose(expected, layer.call(ToTensor(x)), 1e-5, "Bone forward");
    }

    [TestMethod]
    [DynamicData(nameof(Shapes))]
    public void ForwardWorksOnBatchedSequences(int outF, int inF, int r)
    {
        using var scope = NewDisposeScope();
        var layer = Layer(outF, inF);
        AttachBone(layer, BoneBlock(r, outF));
        double[,] x = Input(6, inF);
        Tensor flat = layer.call(ToTensor(x));
        Tensor batched = layer.call(ToTensor(x).reshape(2, 3, inF));
        AssertClose(flat.reshape(2, 3, outF), batched, 1e-6, "[2,3,in] vs [6,in]");
    }

    [TestMethod]
    [DynamicData(nameof(Shapes))]
    public void DeltaWeightEqualsClosedForm(int outF, int inF, int r)
    {
        using var scope = NewDisposeScope();
        double[,] bone = BoneBlock(r, outF);
        AssertClose(ClosedFormDelta(bone, inF), BoneMath.DeltaWeight(ToTensor(bone), inF), 1e-7, "ΔW");
    }

    [TestMethod]
    [DynamicData(nameof(Shapes))]
    public void EqualsItsExactLoraFactorisation(int outF, int inF, int r)
    {
        using var scope = NewDisposeScope();
        double[,] bone = BoneBlock(r, outF);
        var boneLayer = Layer(outF, inF);
        AttachBone(boneLayer, bone);

        // A[c, k] = 1 iff k mod r == c; B = boneᵀ; scale 1 (alpha = r).
        var loraLayer = Layer(outF, inF);
        var lora = new LoraLayer("layer", loraLayer, new LoraConfig { R = r, Alpha = r, TargetModules = ["layer"] });
        var a = new double[r, inF];
        for (int k = 0; k < inF; k++) a[k % r, k] = 1;
        var b = new double[outF, r];
        for (int o = 0; o < outF; o++) for (int c = 0; c < r; c++) b[o, c] = bone[c, o];
        using (no_grad())
        {
            lora.lora_A.weight.copy_(ToTensor(a));
            lora.lora_B.weight.copy_(ToTensor(b));
        }
        loraLayer.Attach(lora);

        Tensor x = ToTensor(Input(4, inF));
        AssertClose(loraLayer.call(x), boneLayer.call(x), 1e-5, "Bone vs LoRA(A one-hot, B = boneᵀ)");
    }

    [TestMethod]
    [DynamicData(nameof(Shapes))]
    public void MergeThenUnmergeRestoresWeightAndKeepsOutputs(int outF, int inF, int r)
    {
        using var scope = NewDisposeScope();
        var layer = Layer(outF, inF);
        AttachBone(layer, BoneBlock(r, outF));
        Tensor x = ToTensor(Input(3, inF));
        Tensor unmerged = layer.call(x).detach().clone();

        layer.Merge(safe: true);
        AssertClose(unmerged, layer.call(x), 1e-5, "merged output");
        AssertClose(Add(Weight(outF, inF), ClosedFormDelta(BoneBlock(r, outF), inF)), layer.weight, 1e-6, "merged weight");

        layer.Unmerge();
        AssertClose(Weight(outF, inF), layer.weight, 1e-6, "unmerged weight");
        AssertClose(unmerged, layer.call(x), 1e-5, "unmerged output");
    }

    [TestMethod]
    public void GradientOfBlockIsChunkSumTransposedTimesUpstream()
    {
        using var scope = NewDisposeScope();
        const int outF = 5, inF = 10, r = 4;
        var layer = Layer(outF, inF);
        var bone = AttachBone(layer, BoneBlock(r, outF));
        double[,] x = Input(3, inF);
        // L = Σ y ⊙ G with a fixed G, so dL/dy = G and dL/dbone = sᵀ·G.
        var g = new double[3, outF];
        for (int n = 0; n < 3; n++) for (int o = 0; o < outF; o++) g[n, o] = 0.1 * (n + 1) - 0.05 * o;
        (layer.call(ToTensor(x)) * ToTensor(g)).sum().backward();

        var expected = new double[r, outF];
        for (int n = 0; n < 3; n++)
            for (int c = 0; c < r; c++)
            {
                double s = 0;
                for (int k = c; k < inF; k += r) s += x[n, k];
                for (int o = 0; o < outF; o++) expected[c, o] += s * g[n, o];
            }
        AssertClose(expected, bone.miss_block.grad!, 1e-5, "dL/dbone");
    }

    [TestMethod]
    public void StartsAsIdentityAndKeepsBf16Dtype()
    {
        using var scope = NewDisposeScope();
        var layer = Layer(8, 8, dtype: ScalarType.BFloat16);
        Tensor x = ToTensor(Input(2, 8)).to(ScalarType.BFloat16);
        Tensor before = layer.call(x);
        layer.Attach(new BoneLayer("layer", layer, 4));
        Tensor after = layer.call(x);
        Assert.AreEqual(ScalarType.BFloat16, after.dtype);
        Assert.AreEqual(ScalarType.Float32, ((BoneLayer)layer.Adapter!).miss_block.dtype, "adapter stays float32");
        AssertClose(before, after, 0, "zero-initialised Bone is the identity");
    }
}
