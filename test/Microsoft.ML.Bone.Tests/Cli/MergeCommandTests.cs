using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Tests.Adapters;
using Microsoft.ML.Bone.Tests.IO;
using TorchSharp;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.Cli;

[TestClass]
public sealed class MergeCommandTests
{
    private string _dir = "";
    private string ModelDir => Path.Combine(_dir, "model");
    private string AdapterDir => Path.Combine(_dir, "adapter");
    private string OutDir => Path.Combine(_dir, "merged");

    [TestInitialize]
    public void Init() => _dir = Directory.CreateTempSubdirectory("bone-merge-").FullName;

    [TestCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);

    private static TinyModel NewModel()
    {
        return Deterministic(new TinyModel(), 11);
    }

    private void WriteBase(TinyModel model, ScalarType dtype = ScalarType.Float32)
    {
        Directory.CreateDirectory(ModelDir);
        File.WriteAllText(Path.Combine(ModelDir, "config.json"), """{"model_type": "tiny", "hidden_size": 8}""");
        File.WriteAllText(Path.Combine(ModelDir, "tokenizer.json"), "{}");
        ModuleWeights.Save(model, Path.Combine(ModelDir, "model.safetensors"), dtype);
    }

    private AdapterModel WriteAdapter(AdapterConfig config)
    {
        var model = NewModel();
        var adapted = AdapterModel.Inject(model, config);
        using (no_grad())
        {
            int i = 0;
            foreach (var p in adapted.TrainableParameters()) p.add_(0.05 * cos(arange(p.numel(), dtype: ScalarType.Float32) * 0.7 + i++).reshape(p.shape));
        }
        PeftAdapterDirectory.Save(adapted, AdapterDir);
        return adapted;
    }

    private static TinyModel LoadMerged(string dir)
    {
        var merged = NewModel();
        using var checkpoint = SafetensorsCheckpoint.Open(dir);
        ModuleWeights.Load(merged, checkpoint);
        return merged;
    }

    public static IEnumerable<object[]> Configs =>
    [
        [new BoneConfig { R = 5, TargetModules = ["q_proj", "up_proj", "down_proj"] }],
        [new BoneConfig { R = 4, Variant = BoneVariant.Bat, TargetModules = ["q_proj", "v_proj", "up_proj", "down_proj"] }],
        [new LoraConfig { R = 2, Alpha = 5, TargetModules = ["v_proj"], ModulesToSave = ["classifier"] }],
    ];

    [TestMethod]
    [DynamicData(nameof(Configs))]
    public void MergedCheckpointReproducesTheAdaptedModel(AdapterConfig config)
    {
        using var scope = NewDisposeScope();
        WriteBase(NewModel());
        var adapted = WriteAdapter(config);

        var result = BoneCli.Run("merge", "--model", ModelDir, "--adapter", AdapterDir, "--out", OutDir);
        Assert.AreEqual(0, result.ExitCode, result.StdErr);
        StringAssert.Contains(result.StdOut, $"Merged {adapted.AdaptedLayers.Count} weights");

        Tensor x = ToTensor(Input(5, 8));
        AssertClose(((TinyModel)adapted.Model).call(x), LoadMerged(OutDir).call(x), 1e-5, "merged checkpoint vs adapted model");
        CollectionAssert.AreEquivalent(new[] { "config.json", "tokenizer.json", "model.safetensors" }, Directory.GetFiles(OutDir).Select(Path.GetFileName).ToArray());
        Assert.AreEqual(File.ReadAllText(Path.Combine(ModelDir, "config.json")), File.ReadAllText(Path.Combine(OutDir, "config.json")));
    }

    [TestMethod]
    public void KeepsNamesShapesAndDtypesOfABf16Checkpoint()
    {
        using var scope = NewDisposeScope();
        WriteBase(NewModel(), ScalarType.BFloat16);
        WriteAdapter(new BoneConfig { R = 4, Variant = BoneVariant.Bat, TargetModules = ["q_proj"] });
        Assert.AreEqual(0, BoneCli.Run("merge", "--model", ModelDir, "--adapter", AdapterDir, "--out", OutDir).ExitCode);

        var (before, _) = HandWrittenSafetensors.ReadHeader(Path.Combine(ModelDir, "model.safetensors"));
        var (after, _) = HandWrittenSafetensors.ReadHeader(Path.Combine(OutDir, "model.safetensors"));
        var describe = (System.Text.Json.JsonDocument d) => d.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__")
            .ToDictionary(p => p.Name, p => p.Value.GetProperty("dtype").GetString() + string.Join(",", p.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64())));
        CollectionAssert.AreEquivalent(describe(before), describe(after));
        Assert.IsTrue(describe(after).Values.All(v => v.StartsWith("BF16")));
    }

    [TestMethod]
    public void MergesIntoAShardedCheckpoint()
    {
        using var scope = NewDisposeScope();
        var model = NewModel();
        Directory.CreateDirectory(ModelDir);
        File.WriteAllText(Path.Combine(ModelDir, "config.json"), "{}");
        var state = model.state_dict().OrderBy(p => p.Key, StringComparer.Ordinal).ToList();
        var shards = new[] { state.Take(state.Count / 2).ToList(), state.Skip(state.Count / 2).ToList() };
        var weightMap = new Dictionary<string, string>();
        for (int s = 0; s < 2; s++)
        {
            string name = $"model-0000{s + 1}-of-00002.safetensors";
            SafetensorsWriter.Write(Path.Combine(ModelDir, name), shards[s].Select(p => new KeyValuePair<string, Tensor>(p.Key, p.Value.detach())));
            foreach (var (key, _) in shards[s]) weightMap[key] = name;
        }
        SafetensorsCheckpoint.WriteIndex(Path.Combine(ModelDir, "model.safetensors.index.json"), weightMap, state.Sum(p => p.Value.numel() * 4));
        var adapted = WriteAdapter(new BoneConfig { R = 4, TargetModules = [TargetModuleMatcher.AllLinear] });

        Assert.AreEqual(0, BoneCli.Run("merge", "--model", ModelDir, "--adapter", AdapterDir, "--out", OutDir).ExitCode);

        CollectionAssert.AreEquivalent(Directory.GetFiles(ModelDir).Select(Path.GetFileName).ToArray(), Directory.GetFiles(OutDir).Select(Path.GetFileName).ToArray());
        using var index = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(OutDir, "model.safetensors.index.json")));
        var outMap = index.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString());
        CollectionAssert.AreEquivalent(weightMap, outMap);
        Tensor x = ToTensor(Input(3, 8));
        AssertClose(((TinyModel)adapted.Model).call(x), LoadMerged(OutDir).call(x), 1e-5, "sharded merge");
    }

    [TestMethod]
    public void BadInputFailsWithOneLineAndLeavesNoOutput()
    {
        using var scope = NewDisposeScope();
        BoneCli.AssertOneLineError(BoneCli.Run("merge", "--model", ModelDir, "--adapter", AdapterDir, "--out", OutDir), ModelDir, "model directory not found");

        WriteBase(NewModel());
        WriteAdapter(new BoneConfig { R = 4, TargetModules = ["q_proj"] });
        File.WriteAllText(Path.Combine(ModelDir, "config.json"), "{ not json");
        BoneCli.AssertOneLineError(BoneCli.Run("merge", "--model", ModelDir, "--adapter", AdapterDir, "--out", OutDir), "config.json", "not valid JSON");
        File.WriteAllText(Path.Combine(ModelDir, "config.json"), "{}");

        // Bone block for a layer with 16 outputs, the base has 8.
        string adapterFile = Path.Combine(AdapterDir, "adapter_model.safetensors");
        HandWrittenSafetensors.Write(adapterFile, [new("base_model.model.model.layers.0.self_attn.q_proj.bone_block", [4, 16], new float[64])]);
        BoneCli.AssertOneLineError(BoneCli.Run("merge", "--model", ModelDir, "--adapter", AdapterDir, "--out", OutDir), adapterFile, "[4, 16]", "[8, 8]");

        // Bat blocks of rank 3 on an 8×8 weight.
        HandWrittenSafetensors.Write(adapterFile, [new("base_model.model.model.layers.0.self_attn.q_proj.bone_block", [3, 3, 3], new float[27])]);
        BoneCli.AssertOneLineError(BoneCli.Run("merge", "--model", ModelDir, "--adapter", AdapterDir, "--out", OutDir), adapterFile, "[r, r] blocks");

        // A module the base does not have.
        HandWrittenSafetensors.Write(adapterFile, [new("base_model.model.model.layers.7.self_attn.q_proj.bone_block", [4, 8], new float[32])]);
        BoneCli.AssertOneLineError(BoneCli.Run("merge", "--model", ModelDir, "--adapter", AdapterDir, "--out", OutDir), "model.layers.7.self_attn.q_proj.weight");

        // A truncated adapter file.
        File.WriteAllBytes(adapterFile, [1, 2, 3]);
        BoneCli.AssertOneLineError(BoneCli.Run("merge", "--model", ModelDir, "--adapter", AdapterDir, "--out", OutDir), adapterFile);

        Assert.IsFalse(Directory.Exists(OutDir), "nothing written to --out");
        Assert.IsFalse(Directory.EnumerateFileSystemEntries(_dir).Any(p => Path.GetFileName(p).Contains(".tmp-")), "no temporary folder left");

        Directory.CreateDirectory(OutDir);
        File.WriteAllText(Path.Combine(OutDir, "keep.txt"), "x");
        WriteAdapter(new BoneConfig { R = 4, TargetModules = ["q_proj"] });
        BoneCli.AssertOneLineError(BoneCli.Run("merge", "--model", ModelDir, "--adapter", AdapterDir, "--out", OutDir), "not empty");
        Assert.AreEqual("x", File.ReadAllText(Path.Combine(OutDir, "keep.txt")));
    }

    [TestMethod]
    public void TheAdapterConfigDecidesWhatMayBeMerged()
    {
        using var scope = NewDisposeScope();
        WriteBase(NewModel());
        var adapted = WriteAdapter(new LoraConfig { R = 2, Alpha = 4, TargetModules = ["q_proj"] });
        string adapterFile = Path.Combine(AdapterDir, "adapter_model.safetensors");
        var tensors = new Dictionary<string, Tensor>();
        using (var file = SafetensorsFile.Open(adapterFile))
            foreach (var e in file.Entries) tensors[e.Name] = file.Load(e.Name);

        // PEFT's older key form (adapter name inside the key) merges exactly as the current one.
        SafetensorsWriter.Write(adapterFile, tensors.ToDictionary(t => t.Key.Replace(".weight", ".default.weight"), t => t.Value));
        var result = BoneCli.Run("merge", "--model", ModelDir, "--adapter", AdapterDir, "--out", OutDir);
        Assert.AreEqual(0, result.ExitCode, result.StdErr);
        Tensor x = ToTensor(Input(5, 8));
        AssertClose(((TinyModel)adapted.Model).call(x), LoadMerged(OutDir).call(x), 1e-5, "merged from .default.weight keys");
        Directory.Delete(OutDir, recursive: true);

        // A tensor that is neither LoRA's, nor the base's, nor under modules_to_save.
        SafetensorsWriter.Write(adapterFile, new Dictionary<string, Tensor>(tensors) { ["base_model.model.mystery.weight"] = ones(3) });
        BoneCli.AssertOneLineError(BoneCli.Run("merge", "--model", ModelDir, "--adapter", AdapterDir, "--out", OutDir), "mystery.weight", "modules_to_save");

        // A Bone block in a LoRA adapter.
        SafetensorsWriter.Write(adapterFile, new Dictionary<string, Tensor>(tensors) { ["base_model.model.model.layers.0.self_attn.v_proj.miss_block"] = ones(2, 8) });
        BoneCli.AssertOneLineError(BoneCli.Run("merge", "--model", ModelDir, "--adapter", AdapterDir, "--out", OutDir), "v_proj.miss_block", "peft_type LORA");

        // An untrained adapter (B = 0) changes nothing: refused rather than writing a copy of the base.
        SafetensorsWriter.Write(adapterFile, tensors.ToDictionary(t => t.Key, t => t.Key.Contains("lora_B") ? zeros_like(t.Value) : t.Value));
        BoneCli.AssertOneLineError(BoneCli.Run("merge", "--model", ModelDir, "--adapter", AdapterDir, "--out", OutDir), "merging would change nothing");
        Assert.IsFalse(Directory.Exists(OutDir), "nothing written");
    }
}
