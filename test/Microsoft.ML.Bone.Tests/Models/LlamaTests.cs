using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Models.Llama;
using TorchSharp;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.Models;

[TestClass]
public sealed class LlamaTests
{
    private string _dir = "";

    [TestInitialize]
    public void Init() => _dir = Directory.CreateTempSubdirectory("bone-llama-").FullName;

    [TestCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);

    private static readonly long[,] Ids = { { 1, 5, 17, 33, 8, 2, 39 }, { 1, 9, 9, 21, 4, 30, 12 } };

    private static Dictionary<string, Tensor> StateDict(nn.Module m) => m.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());

    private static Tensor Input(long[,] ids) => tensor(ids.Cast<long>().ToArray(), [ids.GetLength(0), ids.GetLength(1)]);

    public static IEnumerable<object[]> Configs =>
    [
        [TinyLlama.Config(), "default"],
        [TinyLlama.Config(tied: true), "tied"],
        [TinyLlama.Config(new RopeScaling("linear", 2)), "linear"],
        [TinyLlama.Config(new RopeScaling("llama3", 4, 1, 4, 8)), "llama3"],
    ];

    [TestMethod]
    [DynamicData(nameof(Configs))]
    public void LogitsEqualAnIndependentComputation(LlamaConfig config, string name)
    {
        using var scope = NewDisposeScope();
        var original = TinyLlama.Create(config);
        original.SaveConfigAndWeights(_dir);
        var model = LlamaForCausalLM.FromPretrained(_dir);
        Tensor expected = TinyLlama.Reference(StateDict(original), config, Ids);
        using var noGrad = no_grad();
        AssertClose(expected, model.call(Input(Ids)), 1e-4, name);
    }

    [TestMethod]
    public void ShardedBf16CheckpointLoadsAndKeepsItsDtypeWhenAsked()
    {
        using var scope = NewDisposeScope();
        var config = TinyLlama.Config();
        var original = TinyLlama.Create(config);
        File.WriteAllText(Path.Combine(_dir, "config.json"), config.ToJson());
        var state = original.state_dict().OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => new KeyValuePair<string, Tensor>(p.Key, p.Value.to(ScalarType.BFloat16))).ToList();
        var map = new Dictionary<string, string>();
        for (int s = 0; s < 2; s++)
        {
            string shard = $"model-0000{s + 1}-of-00002.safetensors";
            var part = state.Where((_, i) => i % 2 == s).ToList();
            Microsoft.ML.Bone.IO.SafetensorsWriter.Write(Path.Combine(_dir, shard), part);
            foreach (var (name, _) in part) map[name] = shard;
        }
        Microsoft.ML.Bone.IO.SafetensorsCheckpoint.WriteIndex(Path.Combine(_dir, "model.safetensors.index.json"), map, 0);

        var kept = LlamaForCausalLM.FromPretrained(_dir, new ModelLoadOptions { DType = null });
        Assert.AreEqual(ScalarType.BFloat16, kept.model.layers[1].mlp.down_proj.weight.dtype);
        var float32 = LlamaForCausalLM.FromPretrained(_dir);
        Assert.AreEqual(ScalarType.Float32, float32.model.norm.weight.dtype);
        using var noGrad = no_grad();
        Tensor logits32 = float32.call(Input(Ids));
        AssertClose(TinyLlama.Reference(StateDict(float32), config, Ids), logits32, 1e-4, "fp32 from bf16 shards");
        Tensor logits16 = kept.call(Input(Ids));
        Assert.AreEqual(ScalarType.BFloat16, logits16.dtype);
        double spread = logits32.abs().max().item<float>();
        Assert.IsTrue((logits16.to(ScalarType.Float32) - logits32).abs().max().item<float>() < 0.1 * spread, "bf16 run close to the float32 run");
    }

    [TestMethod]
    public void Llama3FrequenciesMatchTheReferenceValues()
    {
        // Published reference for head_dim 128, θ = 5e5, llama3 factor 8 / 1 / 4 / 8192.
        var config = new LlamaConfig { HeadDim = 128, RopeTheta = 500000, RopeScaling = new RopeScaling("llama3", 8, 1, 4, 8192) };
        double[] inv = RotaryEmbedding.InverseFrequencies(config);
        Assert.AreEqual(1.0, inv[0], 1e-12);
        Assert.AreEqual(1.656044e-02, inv[20], 1e-7);
        Assert.AreEqual(3.428102e-05, inv[40], 1e-10);
        Assert.AreEqual(3.068926e-07, inv[63], 1e-12);
        var dynamic = new LlamaConfig { HeadDim = 8, RopeTheta = 10000, MaxPositionEmbeddings = 16, RopeScaling = new RopeScaling("dynamic", 2) };
        CollectionAssert.AreEqual(RotaryEmbedding.InverseFrequencies(dynamic with { RopeScaling = null }, 10), RotaryEmbedding.InverseFrequencies(dynamic, 10), "within the trained length");
        double grown = 10000 * Math.Pow(2 * 32.0 / 16 - 1, 8 / 6.0);
        Assert.AreEqual(1 / Math.Pow(grown, 2.0 / 8), RotaryEmbedding.InverseFrequencies(dynamic, 31)[1], 1e-6, "NTK base for 32 positions");
    }

    [TestMethod]
    public void LeftPaddingWithPositionIdsLeavesTheSequenceUnchanged()
    {
        using var scope = NewDisposeScope();
        var config = TinyLlama.Config();
        var model = TinyLlama.Create(config);
        long[,] padded = { { 0, 0, 1, 5, 17 } };
        Tensor mask = tensor(new long[] { 0, 0, 1, 1, 1 }).unsqueeze(0);
        Tensor positions = tensor(new long[] { 1, 1, 0, 1, 2 }).unsqueeze(0);
        using var noGrad = no_grad();
        Tensor alone = model.call(Input(new long[,] { { 1, 5, 17 } }));
        Tensor withPads = model.Forward(Input(padded), mask, positions);
        AssertClose(alone[0], withPads[0].narrow(0, 2, 3), 1e-5, "left-padded row");
        Tensor expected = TinyLlama.Reference(StateDict(model), config, padded, new long[,] { { 1, 1, 0, 1, 2 } }, new bool[,] { { true, true, false, false, false } });
        AssertClose(expected[0].narrow(0, 2, 3), withPads[0].narrow(0, 2, 3), 1e-4, "reference with padding");
    }

    [TestMethod]
    public void CachedStepsEqualTheFullForward()
    {
        using var scope = NewDisposeScope();
        var model = TinyLlama.Create(TinyLlama.Config());
        Tensor ids = Input(Ids);
        using var noGrad = no_grad();
        Tensor full = model.call(ids);
        using var cache = new KeyValueCache(2);
        Tensor first = model.Forward(ids.narrow(1, 0, 4), cache: cache);
        Tensor rest = cat(Enumerable.Range(4, 3).Select(t => model.Forward(ids.narrow(1, t, 1), cache: cache)).ToArray(), 1);
        AssertClose(full, cat([first, rest], 1), 1e-5, "prefill + three cached steps");
        Assert.AreEqual(7, cache.Length);
    }

    public static IEnumerable<object[]> Adapters =>
    [
        [new BoneConfig { R = 4, RandomInit = true }],
        [new BoneConfig { R = 4, Variant = BoneVariant.Bat }],
        [new LoraConfig { R = 2, Alpha = 4, Init = LoraInit.Gaussian }],
        [new LoraConfig { R = 2, Alpha = 4, Init = LoraInit.PiSSA }],
        [new LoraConfig { R = 2, Alpha = 4, Init = LoraInit.OLoRA }],
    ];

    [TestMethod]
    [DynamicData(nameof(Adapters))]
    public void AdaptedLogitsEqualTheIndependentComputationMergedAndUnmerged(AdapterConfig config)
    {
        using var scope = NewDisposeScope();
        var llama = TinyLlama.Config();
        var model = TinyLlama.Create(llama);
        config.TargetModules = LlamaConfig.AllProjections;
        var adapted = AdapterModel.Inject(model, config);
        Assert.AreEqual(2 * 7, adapted.AdaptedLayers.Count);
        using (no_grad())
            foreach (var p in adapted.TrainableParameters()) p.add_(0.05 * (arange(p.numel(), dtype: ScalarType.Float32) * 0.37).cos().reshape(p.shape));
        var weights = StateDict(model);
        var deltas = adapted.AdaptedLayers.ToDictionary(l => l.Key + ".weight", l => l.Value.Adapter!.DeltaWeight(l.Value.weight.detach().to(ScalarType.Float32)).detach().to(ScalarType.Float64));
        Tensor expected = TinyLlama.Reference(weights, llama, Ids, weight: n => deltas.TryGetValue(n, out var d) ? weights[n].to(ScalarType.Float64) + d : weights[n]);
        using var noGrad = no_grad();
        AssertClose(expected, model.call(Input(Ids)), 1e-4, "unmerged");
        adapted.Merge(safe: true);
        AssertClose(expected, model.call(Input(Ids)), 1e-4, "merged");
        adapted.Unmerge();
        AssertClose(expected, model.call(Input(Ids)), 1e-4, "unmerged again");
    }

    [TestMethod]
    public void Stories260KGeneratesTheReferenceGreedyIds()
    {
        using var scope = NewDisposeScope();
        var model = Llama2cCheckpoint.Load(SharedData.Path("models", "stories260K", "stories260K.bin"));
        Assert.AreEqual((64, 172, 5, 8, 4, 512, true), (model.Config.HiddenSize, model.Config.IntermediateSize, model.Config.NumHiddenLayers, model.Config.NumAttentionHeads, model.Config.NumKeyValueHeads, model.Config.VocabSize, model.Config.TieWordEmbeddings));
        long[] expected = [461, 461, 401, 401, 401, 461, 378, 455, 473, 456, 435, 299, 362, 409, 283, 264, 283, 452, 288, 13, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 293, 430, 417, 363, 416, 315, 342];
        var ids = new List<long> { 1 };
        using var noGrad = no_grad();
        for (int i = 0; i < expected.Length; i++)
            ids.Add(model.call(tensor(ids.ToArray()).unsqueeze(0))[0, -1].argmax().item<long>());
        CollectionAssert.AreEqual(expected, ids.Skip(1).ToArray());
    }

    [TestMethod]
    public void BadLlama2cFilesAreRejected()
    {
        string path = Path.Combine(_dir, "bad.bin");
        File.WriteAllBytes(path, [1, 2, 3]);
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => Llama2cCheckpoint.Load(path)).Message, "too short");
        using (var w = new BinaryWriter(File.Create(path))) { foreach (int v in new[] { 64, 172, 5, 8, 4, 512, 512 }) w.Write(v); w.Write(new byte[100]); }
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => Llama2cCheckpoint.Load(path)).Message, "the header describes");
        using (var w = new BinaryWriter(File.Create(path))) { w.Write(0x616b3432); w.Write(new byte[100]); }
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => Llama2cCheckpoint.Load(path)).Message, "ak42");
    }
}
