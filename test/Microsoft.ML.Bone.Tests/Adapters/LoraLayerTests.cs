using Microsoft.ML.Bone.Adapters;
using TorchSharp;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.Adapters;

[TestClass]
public sealed class LoraLayerTests
{
    private static LoraLayer Attach(AdaptableLinear layer, LoraConfig config)
    {
        config.TargetModules = ["layer"];
        var lora = new LoraLayer("layer", layer, config);
        layer.Attach(lora);
        return lora;
    }

    [TestMethod]
    public void ForwardIsBasePlusScaledLowRankProduct()
    {
        using var scope = NewDisposeScope();
        const int outF = 6, inF = 10, r = 3;
        var layer = Layer(outF, inF);
        var lora = Attach(layer, new LoraConfig { R = r, Alpha = 12 });
        var a = new double[r, inF];
        var b = new double[outF, r];
        for (int c = 0; c < r; c++) for (int k = 0; k < inF; k++) a[c, k] = Math.Sin(c + 0.3 * k);
        for (int o = 0; o < outF; o++) for (int c = 0; c < r; c++) b[o, c] = Math.Cos(o - c);
        using (no_grad()) { lora.lora_A.weight.copy_(ToTensor(a)); lora.lora_B.weight.copy_(ToTensor(b)); }

        var delta = new double[outF, inF];
        for (int o = 0; o < outF; o++) for (int k = 0; k < inF; k++) for (int c = 0; c < r; c++) delta[o, k] += 4.0 * b[o, c] * a[c, k];
        double[,] x = Input(4, inF);
        AssertClose(Linear(x, Add(Weight(outF, inF), delta), Bias(outF)), layer.call(ToTensor(x)), 1e-4, "LoRA forward, scale 12/3");

        layer.Merge(safe: true);
        AssertClose(Add(Weight(outF, inF), delta), layer.weight, 1e-5, "merged weight");
        layer.Unmerge();
        AssertClose(Weight(outF, inF), layer.weight, 1e-5, "unmerged weight");
    }

    [TestMethod]
    public void RsLoraScalesByAlphaOverRootR()
    {
        Assert.AreEqual(16 / 2.0, new LoraConfig { R = 4, Alpha = 16, UseRsLora = true }.Scale, 1e-12);
        Assert.AreEqual(16 / 4.0, new LoraConfig { R = 4, Alpha = 16 }.Scale, 1e-12);
    }

    [TestMethod]
    public void DefaultInitStartsAsIdentityWithKaimingA()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        var layer = Layer(8, 32);
        Tensor x = ToTensor(Input(3, 32));
        Tensor before = layer.call(x).detach().clone();
        var lora = Attach(layer, new LoraConfig { R = 4 });
        AssertClose(before, layer.call(x), 0, "B = 0 so the output is unchanged");
        // Kaiming-uniform with a = √5 draws from U(−1/√in, 1/√in).
        double bound = 1 / Math.Sqrt(32);
        Assert.IsTrue(lora.lora_A.weight.abs().max().item<float>() <= bound + 1e-6);
        Assert.IsTrue(lora.lora_A.weight.std().item<float>() > bound / 3, "A is not degenerate");
    }

    [TestMethod]
    public void PissaKeepsOutputAndTakesTopSingularTriplets()
    {
        using var scope = NewDisposeScope();
        const int outF = 12, inF = 10, r = 3;
        var layer = Layer(outF, inF);
        Tensor w0 = layer.weight.detach().clone();
        Tensor x = ToTensor(Input(4, inF));
        Tensor before = layer.call(x).detach().clone();
        var config = new LoraConfig { R = r, Alpha = 6, Init = LoraInit.PiSSA };
        var lora = Attach(layer, config);

        AssertClose(before, layer.call(x), 1e-5, "output unchanged at init");
        // scale·B·A is the best rank-r approximation of W: its singular values are W's top r.
        Tensor lowRank = lora.lora_B.weight.matmul(lora.lora_A.weight) * config.Scale;
        Tensor expectedS = linalg.svdvals(w0).narrow(0, 0, r);
        AssertClose(expectedS, linalg.svdvals(lowRank).narrow(0, 0, r), 1e-4, "top singular values");
        AssertClose(w0 - lowRank, layer.weight, 1e-5, "residual base weight");
        // The residual has no component along the top-r subspace: its singular values are W's r+1...
        AssertClose(linalg.svdvals(w0).narrow(0, r, inF - r), linalg.svdvals(layer.weight).narrow(0, 0, inF - r), 1e-4, "residual spectrum");
    }

    [TestMethod]
    public void RandomizedSvdMatchesExactOnALowRankMatrix()
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        // A 60×40 matrix of rank 5 plus small noise: the randomized SVD must recover the top 5 singular values.
        Tensor w = randn(60, 5).matmul(randn(5, 40)) + 1e-3 * randn(60, 40);
        var layer = new AdaptableLinear(40, 60, hasBias: false);
        using (no_grad()) layer.weight.copy_(w);
        var config = new LoraConfig { R = 5, Alpha = 5, Init = LoraInit.PiSSA, PissaIterations = 2 };
        var lora = Attach(layer, config);
        Tensor lowRank = lora.lora_B.weight.matmul(lora.lora_A.weight) * config.Scale;
        AssertClose(linalg.svdvals(w).narrow(0, 0, 5), linalg.svdvals(lowRank).narrow(0, 0, 5), 1e-3, "top-5 singular values");
        AssertClose(w, lowRank + layer.weight, 1e-4, "W = residual + scale·B·A");
    }

    [TestMethod]
    public void OloraUsesQrFactorsAndKeepsOutput()
    {
        using var scope = NewDisposeScope();
        const int outF = 8, inF = 6, r = 2;
        var layer = Layer(outF, inF);
        Tensor w0 = layer.weight.detach().clone();
        Tensor x = ToTensor(Input(3, inF));
        Tensor before = layer.call(x).detach().clone();
        var config = new LoraConfig { R = r, Alpha = 4, Init = LoraInit.OLoRA };
        var lora = Attach(layer, config);

        AssertClose(before, layer.call(x), 1e-5, "output unchanged at init");
        Tensor b = lora.lora_B.weight;
        AssertClose(eye(r), b.t().matmul(b), 1e-5, "B has orthonormal columns (Q)");
        Tensor a = lora.lora_A.weight;
        Assert.AreEqual(0, a[1, 0].item<float>(), 1e-6, "A is the upper-triangular R");
        AssertClose(w0.narrow(1, 0, r), b.matmul(a).narrow(1, 0, r), 1e-5, "the first r columns of W lie in span(Q_r)");
        AssertClose(w0 - config.Scale * b.matmul(a), layer.weight, 1e-5, "residual base weight");
    }

    [TestMethod]
    public void PissaRankAboveMatrixSizeIsRejected()
    {
        using var scope = NewDisposeScope();
        var layer = Layer(4, 3);
        var e = Assert.ThrowsExactly<ArgumentException>(() => Attach(layer, new LoraConfig { R = 5, Init = LoraInit.PiSSA }));
        StringAssert.Contains(e.Message, "r = 5");
    }
}
