using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Nn;
using TorchSharp;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.Adapters;

[TestClass]
public sealed class MissMiniAndDropoutTests
{
    // (out, in, r, mini_r): divisible, padded input, mini_r = 1 and mini_r = out.
    public static IEnumerable<object[]> Shapes => [[6, 8, 4, 2], [6, 10, 4, 3], [4, 7, 2, 1], [4, 8, 4, 4]];

    /// <summary>MiSS-mini's ΔW[o, k] = mini[k mod r, o mod mini_r], element by element.</summary>
    private static double[,] MiniDelta(double[,] mini, int outF, int inF)
    {
        int r = mini.GetLength(0), m = mini.GetLength(1);
        var d = new double[outF, inF];
        for (int o = 0; o < outF; o++)
            for (int k = 0; k < inF; k++)
                d[o, k] = mini[k % r, o % m];
        return d;
    }

    private static BoneLayer AttachMini(AdaptableLinear layer, double[,] mini)
    {
        var adapter = new BoneLayer("layer", layer, mini.GetLength(0), miniR: mini.GetLength(1));
        using (no_grad()) adapter.miss_block.copy_(ToTensor(mini));
        layer.Attach(adapter);
        return adapter;
    }

    [TestMethod]
    [DynamicData(nameof(Shapes))]
    public void MiniForwardMergeAndUnmergeMatchTheClosedForm(int outF, int inF, int r, int miniR)
    {
        using var scope = NewDisposeScope();
        var layer = Layer(outF, inF);
        double[,] mini = BoneBlock(r, miniR);
        BoneLayer adapter = AttachMini(layer, mini);
        CollectionAssert.AreEqual(new long[] { r, miniR }, adapter.miss_block.shape, "PEFT's (r, mini_r) parameter");
        double[,] merged = Add(Weight(outF, inF), MiniDelta(mini, outF, inF));
        double[,] x = Input(5, inF);

        AssertClose(Linear(x, merged, Bias(outF)), layer.call(ToTensor(x)), 1e-5, "mini forward");
        layer.Merge();
        AssertClose(merged, layer.weight, 1e-6, "merged weight");
        AssertClose(Linear(x, merged, Bias(outF)), layer.call(ToTensor(x)), 1e-5, "merged forward");
        layer.Unmerge();
        AssertClose(Weight(outF, inF), layer.weight, 1e-6, "unmerged weight");
    }

    [TestMethod]
    public void MiniNeedsMiniRToDivideTheOutput()
    {
        using var scope = NewDisposeScope();
        var e = Assert.ThrowsExactly<ArgumentException>(() => new BoneLayer("model.layers.0.q_proj", Layer(6, 8), 4, miniR: 4));
        StringAssert.Contains(e.Message, "model.layers.0.q_proj");
        StringAssert.Contains(e.Message, "mini_r = 4 must divide out_features (6)");
    }

    [TestMethod]
    public void MiniReproducesPeftsParameterCount()
    {
        // PEFT's method comparison (Llama-3.2-3B: 28 layers, q_proj and v_proj, r = 64, mini_r = 64) reports 229,376
        // trainable parameters: r·mini_r per layer, whatever the hidden size.
        using var scope = NewDisposeScope();
        var config = new LlamaConfig { VocabSize = 32, HiddenSize = 128, IntermediateSize = 64, NumHiddenLayers = 28, NumAttentionHeads = 2, NumKeyValueHeads = 1, HeadDim = 64, MaxPositionEmbeddings = 8 };
        var model = new LlamaForCausalLM(config);
        var adapted = AdapterModel.Inject(model, new BoneConfig { R = 64, Variant = BoneVariant.Mini, MiniR = 64, TargetModules = ["q_proj", "v_proj"] });
        Assert.AreEqual(229_376, adapted.Summary().Trainable);
        Assert.AreEqual(56, adapted.Summary().AdaptedLayers);
    }

    [TestMethod]
    public void DropoutActsOnTheAdapterInputOnlyAndOnlyInTraining()
    {
        using var scope = NewDisposeScope();
        const int outF = 6, inF = 10, r = 4;
        const double p = 0.5;
        var layer = Layer(outF, inF);
        var adapter = new BoneLayer("layer", layer, r, dropout: p);
        double[,] bone = BoneBlock(r, outF);
        using (no_grad()) adapter.miss_block.copy_(ToTensor(bone));
        layer.Attach(adapter);
        var dropout = adapter.modules().OfType<Dropout>().Single();
        dropout.Random = new RandomSource(7);
        double[,] x = Input(5, inF);

        // Evaluation: no dropout anywhere.
        layer.eval();
        double[,] full = Add(Weight(outF, inF), ClosedFormDelta(bone, inF));
        AssertClose(Linear(x, full, Bias(outF)), layer.call(ToTensor(x)), 1e-5, "eval forward");

        // Training: base(x) + ChunkSum(mask ⊙ x / (1 − p))·bone, with the mask drawn from the same seeded stream.
        layer.train();
        Tensor got = layer.call(ToTensor(x));
        float[] draws = rand([5, inF], dtype: ScalarType.Float32, generator: new RandomSource(7).For(CPU)).data<float>().ToArray();
        var dropped = new double[5, inF];
        for (int n = 0; n < 5; n++)
            for (int k = 0; k < inF; k++)
                dropped[n, k] = draws[n * inF + k] >= p ? x[n, k] / (1 - p) : 0;
        double[,] expected = Add(Linear(x, Weight(outF, inF), Bias(outF)), Linear(dropped, ClosedFormDelta(bone, inF), null));
        AssertClose(expected, got, 1e-5, "training forward: the base path sees the whole input");
    }

    [TestMethod]
    public void LoraDropoutAlsoActsOnItsInputOnly()
    {
        using var scope = NewDisposeScope();
        var model = Deterministic(new TinyModel());
        Tensor x = ToTensor(Input(4, 8));
        Tensor baseOut = model.call(x);
        var adapted = AdapterModel.Inject(model, new LoraConfig { R = 2, Alpha = 2, Dropout = 0.9, TargetModules = ["q_proj"] });
        model.train();
        // B starts at zero, so whatever the dropout does to A's input, the output is the base model's.
        AssertClose(baseOut, model.call(x), 1e-6, "training forward with zero B");
        Assert.AreEqual(2, adapted.Model.modules().OfType<Dropout>().Count(), "one dropout per adapted layer");
    }

    private static double[,] ClosedFormDelta(double[,] bone, int inF)
    {
        int r = bone.GetLength(0), outF = bone.GetLength(1);
        var d = new double[outF, inF];
        for (int o = 0; o < outF; o++)
            for (int k = 0; k < inF; k++)
                d[o, k] = bone[k % r, o];
        return d;
    }
}
