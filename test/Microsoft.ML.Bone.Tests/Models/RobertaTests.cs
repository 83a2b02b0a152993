using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Models.Roberta;
using TorchSharp;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.Models;

[TestClass]
public sealed class RobertaTests
{
    private string _dir = "";

    [TestInitialize]
    public void Init() => _dir = Directory.CreateTempSubdirectory("bone-roberta-").FullName;

    [TestCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);

    // Two sequences, the second right-padded with <pad> = 1.
    private static readonly long[,] Ids = { { 0, 7, 12, 33, 9, 2 }, { 0, 25, 4, 2, 1, 1 } };

    private static (Tensor Ids, Tensor Mask) Batch(long[,] ids)
    {
        Tensor t = tensor(ids.Cast<long>().ToArray(), [ids.GetLength(0), ids.GetLength(1)]);
        return (t, t.ne(1).to(ScalarType.Int64));
    }

    private static Dictionary<string, Tensor> StateDict(nn.Module m) => m.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());

    [TestMethod]
    public void LogitsEqualAnIndependentComputation()
    {
        using var scope = NewDisposeScope();
        var original = TinyRoberta.Create(_dir);
        var model = RobertaForSequenceClassification.FromPretrained(_dir);
        var (ids, mask) = Batch(Ids);
        Tensor expected = TinyRoberta.Reference(StateDict(original), model.Config, Ids);
        using (no_grad()) AssertClose(expected, model.call(ids, mask), 1e-5, "logits");
        Assert.AreEqual(3, model.NumLabels);
    }

    [TestMethod]
    public void PaddingDoesNotChangeTheShorterSequence()
    {
        using var scope = NewDisposeScope();
        var model = TinyRoberta.Create(_dir);
        var (ids, mask) = Batch(Ids);
        var (alone, aloneMask) = Batch(new long[,] { { 0, 25, 4, 2 } });
        using var noGrad = no_grad();
        AssertClose(model.call(alone, aloneMask)[0], model.call(ids, mask)[1], 1e-5, "padded vs unpadded");
    }

    [TestMethod]
    public void PositionIdsSkipPadding()
    {
        using var scope = NewDisposeScope();
        var model = new RobertaForSequenceClassification(TinyRoberta.Config());
        CollectionAssert.AreEqual(new long[] { 2, 3, 4, 5, 1, 1 }, model.roberta.embeddings.PositionIds(tensor(new long[] { 0, 31, 23, 2, 1, 1 }).unsqueeze(0)).data<long>().ToArray());
        CollectionAssert.AreEqual(new long[] { 1, 1, 2, 3, 4 }, model.roberta.embeddings.PositionIds(tensor(new long[] { 1, 1, 0, 31, 2 }).unsqueeze(0)).data<long>().ToArray());
    }

    [TestMethod]
    public void PlainEncoderCheckpointGetsANewHeadAndBareKeysLoad()
    {
        using var scope = NewDisposeScope();
        var original = TinyRoberta.Create(_dir);
        // A RobertaModel checkpoint: no classifier, no "roberta." prefix, a pooler and a position-id buffer to ignore.
        string bare = Path.Combine(_dir, "bare");
        Directory.CreateDirectory(bare);
        File.Copy(Path.Combine(_dir, "config.json"), Path.Combine(bare, "config.json"));
        var tensors = original.state_dict().Where(p => p.Key.StartsWith("roberta.")).Select(p => new KeyValuePair<string, Tensor>(p.Key["roberta.".Length..], p.Value))
            .Append(new("pooler.dense.weight", zeros(16, 16))).Append(new("embeddings.position_ids", arange(40L).unsqueeze(0)));
        SafetensorsWriter.Write(Path.Combine(bare, "model.safetensors"), tensors);

        var model = RobertaForSequenceClassification.FromPretrained(bare, numLabels: 5);
        Assert.AreEqual(5, model.NumLabels);
        Assert.AreEqual(0, model.classifier.out_proj.bias!.abs().sum().item<float>(), "new head: zero bias");
        double std = model.classifier.dense.weight.std().item<float>();
        Assert.IsTrue(std is > 0.01 and < 0.03, $"new head: N(0, 0.02) weights, std {std}");
        var encoder = original.state_dict().Where(p => p.Key.StartsWith("roberta.")).ToList();
        foreach (var (name, value) in encoder)
            Assert.IsTrue(value.eq(model.state_dict()[name]).all().item<bool>(), name);
    }

    [TestMethod]
    public void BadCheckpointsGiveClearErrors()
    {
        using var scope = NewDisposeScope();
        var original = TinyRoberta.Create(_dir);
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => RobertaForSequenceClassification.FromPretrained(_dir, numLabels: 2)).Message, "3 outputs but 2 labels");
        SafetensorsWriter.Write(Path.Combine(_dir, "model.safetensors"), original.state_dict().Where(p => !p.Key.Contains("layer.1.output.dense.weight")));
        var missing = Assert.ThrowsExactly<InvalidDataException>(() => RobertaForSequenceClassification.FromPretrained(_dir));
        StringAssert.Contains(missing.Message, "roberta.encoder.layer.1.output.dense.weight");
        StringAssert.Contains(missing.Message, "model.safetensors");
        Assert.ThrowsExactly<DirectoryNotFoundException>(() => RobertaForSequenceClassification.FromPretrained(Path.Combine(_dir, "nope")));
        File.WriteAllText(Path.Combine(_dir, "config.json"), """{"hidden_act": "relu"}""");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => RobertaForSequenceClassification.FromPretrained(_dir)).Message, "\"hidden_act\" is \"relu\"");
    }

    [TestMethod]
    public void DropoutOnlyInTraining()
    {
        using var scope = NewDisposeScope();
        var model = TinyRoberta.Create(_dir);
        var (ids, mask) = Batch(Ids);
        using var noGrad = no_grad();
        AssertClose(model.call(ids, mask), model.call(ids, mask), 0, "eval is deterministic");
        model.train();
        Assert.IsTrue((model.call(ids, mask) - model.call(ids, mask)).abs().max().item<float>() > 0, "train mode applies dropout");
    }

    public static IEnumerable<object[]> Adapters =>
    [
        [new BoneConfig { R = 5, RandomInit = true }],
        [new BoneConfig { R = 4, Variant = BoneVariant.Bat }],
        [new LoraConfig { R = 3, Alpha = 6, Init = LoraInit.Gaussian }],
        [new LoraConfig { R = 3, Alpha = 6, Init = LoraInit.PiSSA }],
        [new LoraConfig { R = 3, Alpha = 6, Init = LoraInit.OLoRA }],
    ];

    [TestMethod]
    [DynamicData(nameof(Adapters))]
    public void AdaptedLogitsEqualTheIndependentComputationMergedAndUnmerged(AdapterConfig config)
    {
        using var scope = NewDisposeScope();
        TinyRoberta.Create(_dir);
        var model = RobertaForSequenceClassification.FromPretrained(_dir);
        config.TargetModules = RobertaForSequenceClassification.AllProjections;
        config.ModulesToSave = ["classifier"];
        var adapted = AdapterModel.Inject(model, config);
        Assert.AreEqual(2 * 6, adapted.AdaptedLayers.Count, "six projections per layer; classifier.dense is not adapted");
        using (no_grad())
            foreach (var (_, layer) in adapted.AdaptedLayers)
                foreach (var p in layer.Adapter!.parameters()) p.add_(0.03 * (arange(p.numel(), dtype: ScalarType.Float32) * 0.61).cos().reshape(p.shape));

        // The reference sees W + ΔW, with ΔW written out from the adapter's parameters.
        var baseWeights = StateDict(model);
        var deltas = adapted.AdaptedLayers.ToDictionary(l => l.Key + ".weight", l => ClosedFormDelta(l.Value));
        Tensor expected = TinyRoberta.Reference(baseWeights, model.Config, Ids, name => deltas.TryGetValue(name, out var d) ? baseWeights[name].to(ScalarType.Float64) + d : baseWeights[name]);

        var (ids, mask) = Batch(Ids);
        using var noGrad = no_grad();
        AssertClose(expected, model.call(ids, mask), 1e-5, "unmerged");
        adapted.Merge(safe: true);
        AssertClose(expected, model.call(ids, mask), 1e-5, "merged");
        adapted.Unmerge();
        AssertClose(expected, model.call(ids, mask), 1e-5, "unmerged again");
    }

    /// <summary>ΔW of one layer computed element by element from the adapter's own parameters.</summary>
    private static Tensor ClosedFormDelta(AdaptableLinear layer)
    {
        int outF = (int)layer.OutFeatures, inF = (int)layer.InFeatures;
        var delta = new double[outF, inF];
        double[] w = layer.weight.to(ScalarType.Float64).data<double>().ToArray();
        switch (layer.Adapter)
        {
            case BoneLayer bone:
            {
                double[] block = bone.miss_block.to(ScalarType.Float64).data<double>().ToArray();
                int r = (int)bone.miss_block.shape[0];
                for (int o = 0; o < outF; o++) for (int k = 0; k < inF; k++) delta[o, k] = block[(k % r) * outF + o];
                break;
            }
            case BatLayer bat:
            {
                double[] b = bat.miss_block.to(ScalarType.Float64).data<double>().ToArray();
                int r = (int)bat.miss_block.shape[2];
                for (int i = 0; i < outF / r; i++) for (int j = 0; j < inF / r; j++)
                    for (int a = 0; a < r; a++) for (int c2 = 0; c2 < r; c2++)
                    {
                        double s = b[(i * r + a) * r + c2];
                        for (int c = 0; c < r; c++) s += w[(i * r + a) * inF + j * r + c] * b[(i * r + c) * r + c2];
                        delta[i * r + a, j * r + c2] = s;
                    }
                break;
            }
            case LoraLayer lora:
                return (lora.lora_B.weight.to(ScalarType.Float64).matmul(lora.lora_A.weight.to(ScalarType.Float64)) * lora.Scale).detach();
        }
        return tensor(delta.Cast<double>().ToArray(), [outF, inF]);
    }
}
