using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Tests.Adapters;
using TorchSharp;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.IO;

[TestClass]
public sealed class PeftAdapterDirectoryTests
{
    private string _dir = "";

    [TestInitialize]
    public void Init() => _dir = Directory.CreateTempSubdirectory("bone-peft-").FullName;

    [TestCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);

    private static TinyModel NewModel()
    {
        return Deterministic(new TinyModel(), 1);
    }

    /// <summary>Gives every trainable tensor distinct non-zero values, as training would.</summary>
    private static void Perturb(AdapterModel m)
    {
        using var noGrad = no_grad();
        int i = 0;
        foreach (var p in m.TrainableParameters())
            p.add_(0.05 * sin(arange(p.numel(), dtype: ScalarType.Float32) + i++).reshape(p.shape));
    }

    public static IEnumerable<object[]> Configs =>
    [
        [new BoneConfig { R = 4, TargetModules = ["q_proj", "down_proj"], ModulesToSave = ["classifier"] }],
        [new BoneConfig { R = 5, TargetModules = ["up_proj", "down_proj"] }],
        [new BoneConfig { R = 4, Variant = BoneVariant.Bat, TargetModules = ["q_proj", "v_proj", "up_proj"] }],
        [new LoraConfig { R = 3, Alpha = 6, TargetModules = ["q_proj"], ModulesToSave = ["classifier"] }],
    ];

    [TestMethod]
    [DynamicData(nameof(Configs))]
    public void SavedAdapterReloadsBitExactlyAndReproducesOutputs(AdapterConfig config)
    {
        using var scope = NewDisposeScope();
        var model = NewModel();
        var adapted = AdapterModel.Inject(model, config);
        Perturb(adapted);
        PeftAdapterDirectory.Save(adapted, _dir, "tiny", "SEQ_CLS");

        var reloaded = NewModel();
        var again = PeftAdapterDirectory.Load(reloaded, _dir);
        var before = adapted.PeftStateDict().ToDictionary(p => p.Key, p => p.Value);
        foreach (var (key, t) in again.PeftStateDict())
            Assert.IsTrue(before[key].to(ScalarType.Float32).eq(t.to(ScalarType.Float32)).all().item<bool>(), $"{key} bit-exact");
        Tensor x = ToTensor(Input(3, 8));
        AssertClose(model.call(x), reloaded.call(x), 0, "same outputs");
    }

    [TestMethod]
    [DataRow(PeftFormat.Miss, "miss_block", "MISS")]
    [DataRow(PeftFormat.Bone, "bone_block", "BONE")]
    public void FileLayoutIsPeftsOwn(PeftFormat format, string block, string peftType)
    {
        using var scope = NewDisposeScope();
        var adapted = AdapterModel.Inject(NewModel(), new BoneConfig { R = 4, Variant = BoneVariant.Bat, TargetModules = ["q_proj"], ModulesToSave = ["classifier"] });
        Perturb(adapted);
        PeftAdapterDirectory.Save(adapted, _dir, format: format);
        StringAssert.Contains(File.ReadAllText(Path.Combine(_dir, "adapter_config.json")), $"\"peft_type\": \"{peftType}\"");

        string file = Path.Combine(_dir, "adapter_model.safetensors");
        var (header, _) = HandWrittenSafetensors.ReadHeader(file);
        var names = header.RootElement.EnumerateObject().Select(p => p.Name).Where(n => n != "__metadata__").Order().ToArray();
        CollectionAssert.AreEqual(new[]
        {
            "base_model.model.classifier.dense.bias", "base_model.model.classifier.dense.weight",
            "base_model.model.classifier.out_proj.bias", "base_model.model.classifier.out_proj.weight",
            $"base_model.model.model.layers.0.self_attn.q_proj.{block}", $"base_model.model.model.layers.1.self_attn.q_proj.{block}",
        }, names);
        Assert.AreEqual("pt", header.RootElement.GetProperty("__metadata__").GetProperty("format").GetString());
        var entry = header.RootElement.GetProperty($"base_model.model.model.layers.1.self_attn.q_proj.{block}");
        Assert.AreEqual("F32", entry.GetProperty("dtype").GetString());
        CollectionAssert.AreEqual(new long[] { 2, 4, 4 }, entry.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray());
        float[] expected = ((BatLayer)adapted.AdaptedLayers[1].Value.Adapter!).miss_block.data<float>().ToArray();
        CollectionAssert.AreEqual(expected, HandWrittenSafetensors.ReadF32(file, $"base_model.model.model.layers.1.self_attn.q_proj.{block}"));
        // Read back from either format, the blocks land under the in-memory name.
        var (config, tensors) = PeftAdapterDirectory.Read(_dir);
        Assert.AreEqual(format, config.Format);
        Assert.IsTrue(tensors.ContainsKey("base_model.model.model.layers.1.self_attn.q_proj.miss_block"));
    }

    [TestMethod]
    public void LoadsAnAdapterFolderWrittenByPeft()
    {
        // The layout PEFT's save_pretrained produces for a Bone adapter with modules_to_save, written byte by byte.
        File.WriteAllText(Path.Combine(_dir, "adapter_config.json"), """
            {
              "auto_mapping": null,
              "base_model_name_or_path": "tiny",
              "bias": "none",
              "exclude_modules": null,
              "inference_mode": true,
              "init_weights": true,
              "layers_pattern": null,
              "layers_to_transform": [1],
              "modules_to_save": ["classifier"],
              "peft_type": "BONE",
              "peft_version": "0.17.1",
              "r": 4,
              "revision": null,
              "target_modules": ["v_proj"],
              "task_type": "SEQ_CLS"
            }
            """);
        float[] block = Enumerable.Range(0, 4 * 8).Select(i => 0.01f * (i % 9) - 0.04f).ToArray();
        var model = NewModel();
        var heads = model.classifier.named_parameters().ToDictionary(p => p.name, p => p.parameter.detach().clone() + 0.25f);
        HandWrittenSafetensors.Write(Path.Combine(_dir, "adapter_model.safetensors"),
            new[] { new HandWrittenSafetensors.F32Tensor("base_model.model.model.layers.1.self_attn.v_proj.bone_block", [4, 8], block) }
                .Concat(heads.Select(h => new HandWrittenSafetensors.F32Tensor("base_model.model.classifier." + h.Key, h.Value.shape, h.Value.data<float>().ToArray()))));

        using var scope = NewDisposeScope();
        var adapted = PeftAdapterDirectory.Load(model, _dir);
        Assert.AreEqual("model.layers.1.self_attn.v_proj", adapted.AdaptedLayers.Single().Key);
        CollectionAssert.AreEqual(block, ((BoneLayer)adapted.AdaptedLayers[0].Value.Adapter!).miss_block.data<float>().ToArray());
        foreach (var (name, p) in model.classifier.named_parameters())
            CollectionAssert.AreEqual(heads[name].data<float>().ToArray(), p.data<float>().ToArray(), name);
    }

    [TestMethod]
    public void PissaAdapterIsSavedAsLoraForTheOriginalBase()
    {
        using var scope = NewDisposeScope();
        var model = NewModel();
        var adapted = AdapterModel.Inject(model, new LoraConfig { R = 2, Alpha = 4, Init = LoraInit.PiSSA, TargetModules = ["q_proj", "up_proj"] });
        Perturb(adapted);
        PeftAdapterDirectory.Save(adapted, _dir);

        var config = (LoraConfig)PeftAdapterConfig.Parse(File.ReadAllText(Path.Combine(_dir, "adapter_config.json")), "c").Config;
        Assert.AreEqual((4, 8.0, LoraInit.Default), (config.R, config.Alpha, config.Init), "rank 2r, alpha 2·alpha, plain init");

        var original = NewModel();
        PeftAdapterDirectory.Load(original, _dir);
        Tensor x = ToTensor(Input(4, 8));
        AssertClose(model.call(x), original.call(x), 1e-5, "converted LoRA on the original base = PiSSA on the residual base");
    }

    [TestMethod]
    public void BadFoldersGiveErrorsNamingTheFile()
    {
        using var scope = NewDisposeScope();
        StringAssert.Contains(Assert.ThrowsExactly<FileNotFoundException>(() => PeftAdapterDirectory.Read(Path.Combine(_dir, "nope"))).Message, "adapter directory not found");
        StringAssert.Contains(Assert.ThrowsExactly<FileNotFoundException>(() => PeftAdapterDirectory.Read(_dir)).Message, "adapter_config.json: not found");

        File.WriteAllText(Path.Combine(_dir, "adapter_config.json"), """{"peft_type":"BONE","r":4,"target_modules":["q_proj"]}""");
        File.WriteAllBytes(Path.Combine(_dir, "adapter_model.bin"), [0x80, 2]);
        StringAssert.Contains(Assert.ThrowsExactly<FileNotFoundException>(() => PeftAdapterDirectory.Read(_dir)).Message, "pickled adapters are not read");

        HandWrittenSafetensors.Write(Path.Combine(_dir, "adapter_model.safetensors"), [new("model.layers.0.self_attn.q_proj.bone_block", [4, 8], new float[32])]);
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => PeftAdapterDirectory.Read(_dir)).Message, "does not start with 'base_model.model.'");

        // An adapter made for another base model: hidden size 16 instead of 8.
        HandWrittenSafetensors.Write(Path.Combine(_dir, "adapter_model.safetensors"),
            [new("base_model.model.model.layers.0.self_attn.q_proj.bone_block", [4, 16], new float[64]), new("base_model.model.model.layers.1.self_attn.q_proj.bone_block", [4, 16], new float[64])]);
        var e = Assert.ThrowsExactly<InvalidDataException>(() => PeftAdapterDirectory.Load(NewModel(), _dir));
        StringAssert.Contains(e.Message, "adapter_model.safetensors");
        StringAssert.Contains(e.Message, "[4, 16]");
    }
}
