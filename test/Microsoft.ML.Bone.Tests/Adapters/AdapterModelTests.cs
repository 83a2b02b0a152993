using Microsoft.ML.Bone.Adapters;
using TorchSharp;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.Adapters;

[TestClass]
public sealed class AdapterModelTests
{
    private static string[] Paths(AdapterModel m) => m.AdaptedLayers.Select(l => l.Key).ToArray();

    private static TinyModel NewModel(int seed = 1)
    {
        return Deterministic(new TinyModel(), seed);
    }

    [TestMethod]
    public void SuffixTargetsMatchLikePeft()
    {
        using var scope = NewDisposeScope();
        var m = AdapterModel.Inject(NewModel(), new BoneConfig { R = 4, TargetModules = ["q_proj", "v_proj"] });
        CollectionAssert.AreEqual(new[]
        {
            "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
            "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj",
        }, Paths(m));
    }

    [TestMethod]
    public void RegexMustMatchTheWholePath()
    {
        using var scope = NewDisposeScope();
        var m = AdapterModel.Inject(NewModel(), new BoneConfig { R = 4, TargetModulesRegex = @".*\.layers\.1\..*_proj" });
        CollectionAssert.AreEqual(new[]
        {
            "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj",
            "model.layers.1.mlp.up_proj", "model.layers.1.mlp.down_proj",
        }, Paths(m));
        Assert.ThrowsExactly<ArgumentException>(() => AdapterModel.Inject(NewModel(), new BoneConfig { R = 4, TargetModulesRegex = "q_proj" }),
            "a bare name is not a full match");
    }

    [TestMethod]
    public void LayersToTransformAndExclusions()
    {
        using var scope = NewDisposeScope();
        var m = AdapterModel.Inject(NewModel(), new LoraConfig { R = 2, TargetModules = ["q_proj", "up_proj"], LayersToTransform = [1], LayersPattern = "layers" });
        CollectionAssert.AreEqual(new[] { "model.layers.1.self_attn.q_proj", "model.layers.1.mlp.up_proj" }, Paths(m));

        var all = AdapterModel.Inject(NewModel(), new LoraConfig { R = 2, TargetModules = [TargetModuleMatcher.AllLinear], ExcludeModules = ["down_proj"], ModulesToSave = ["classifier"] });
        CollectionAssert.AreEqual(new[]
        {
            "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.0.mlp.up_proj",
            "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj", "model.layers.1.mlp.up_proj",
        }, Paths(all), "all-linear skips excluded modules and modules to save");
    }

    [TestMethod]
    public void UnknownOrNonLinearTargetsGiveClearErrors()
    {
        using var scope = NewDisposeScope();
        var missing = Assert.ThrowsExactly<ArgumentException>(() => AdapterModel.Inject(NewModel(), new BoneConfig { R = 4, TargetModules = ["query"] }));
        StringAssert.Contains(missing.Message, "[query] not found");
        StringAssert.Contains(missing.Message, "model.layers.0.self_attn.q_proj");

        var nonLinear = Assert.ThrowsExactly<ArgumentException>(() => AdapterModel.Inject(NewModel(), new BoneConfig { R = 4, TargetModules = ["q_proj", "norm"] }));
        StringAssert.Contains(nonLinear.Message, "model.norm");

        var bat = Assert.ThrowsExactly<ArgumentException>(() => AdapterModel.Inject(NewModel(), new BoneConfig { R = 3, Variant = BoneVariant.Bat, TargetModules = ["q_proj"] }));
        StringAssert.Contains(bat.Message, "model.layers.0.self_attn.q_proj");
    }

    [TestMethod]
    public void OnlyAdapterAndSavedModuleParametersTrain()
    {
        using var scope = NewDisposeScope();
        var model = NewModel();
        var m = AdapterModel.Inject(model, new BoneConfig { R = 4, Variant = BoneVariant.Bat, TargetModules = ["q_proj", "down_proj"], ModulesToSave = ["classifier"] });

        Tensor x = ToTensor(Input(5, 8));
        nn.functional.cross_entropy(model.call(x), tensor(new long[] { 0, 1, 2, 0, 1 })).backward();

        foreach (var (name, p) in model.named_parameters())
        {
            bool shouldTrain = name.Contains(".adapters.") || name.StartsWith("classifier.");
            Assert.AreEqual(shouldTrain, p.requires_grad, $"{name} requires_grad");
            if (shouldTrain) Assert.IsTrue(p.grad is not null && p.grad.abs().sum().item<float>() > 0, $"{name} gets a non-zero gradient");
            else Assert.IsNull(p.grad, $"{name} gets no gradient");
        }

        // Bat r=4: (out/r)·r·r = r·out per layer; q_proj out 8, down_proj out 8; classifier 8·8+8 + 3·8+3.
        long expected = 2 * (4 * 8) + 2 * (4 * 8) + (8 * 8 + 8) + (3 * 8 + 3);
        AdapterParameterSummary summary = m.Summary();
        Assert.AreEqual(expected, summary.Trainable);
        Assert.AreEqual(model.parameters().Sum(p => p.numel()), summary.Total);
        Assert.AreEqual(4, summary.AdaptedLayers);
        StringAssert.Contains(summary.ToString(), "trainable params: 227");
    }

    [TestMethod]
    public void MergeAndUnmergeKeepOutputsForEveryMethod()
    {
        AdapterConfig[] configs =
        [
            new BoneConfig { R = 5, RandomInit = true, TargetModules = [TargetModuleMatcher.AllLinear] },
            new BoneConfig { R = 4, Variant = BoneVariant.Bat, TargetModules = ["q_proj", "v_proj", "up_proj", "down_proj"] },
            new BoneConfig { R = 4, Variant = BoneVariant.Bat, BatGrouping = BatGrouping.InputBlock, BatProduct = BatProduct.Hadamard, TargetModules = ["up_proj", "down_proj"] },
            new LoraConfig { R = 3, Alpha = 6, Init = LoraInit.Gaussian, TargetModules = ["q_proj", "down_proj"] },
            new LoraConfig { R = 3, Alpha = 6, Init = LoraInit.PiSSA, TargetModules = ["q_proj", "down_proj"] },
            new LoraConfig { R = 3, Alpha = 6, Init = LoraInit.OLoRA, UseRsLora = true, TargetModules = ["v_proj", "up_proj"] },
        ];
        foreach (AdapterConfig config in configs)
        {
            using var scope = NewDisposeScope();
            var model = NewModel();
            Tensor x = ToTensor(Input(4, 8));
            Tensor baseOutput;
            using (no_grad()) baseOutput = model.call(x).detach().clone();
            var m = AdapterModel.Inject(model, config);
            // Make every adapter non-trivial so that merging has something to do. Random initialisations draw from torch's
            // shared generator, which parallel tests also use, so they are overwritten with fixed values; PiSSA and OLoRA
            // start from a deterministic decomposition and are only shifted.
            bool mutating = config is LoraConfig { MutatesBaseWeights: true };
            using (no_grad())
                foreach (var (_, layer) in m.AdaptedLayers)
                    foreach (var p in layer.Adapter!.parameters())
                    {
                        Tensor values = 0.1 * sin(arange(p.numel(), dtype: ScalarType.Float32)).reshape(p.shape);
                        if (mutating) p.add_(values); else p.copy_(values);
                    }
            string name = config is LoraConfig l ? $"LoRA {l.Init}" : $"{((BoneConfig)config).Variant} {((BoneConfig)config).BatGrouping}";
            Tensor reference = model.call(x).detach().clone();
            Assert.IsTrue((reference - baseOutput).abs().max().item<float>() > 1e-5, $"{name}: the adapter changes the output");
            Tensor[] baseWeights = m.AdaptedLayers.Select(l => l.Value.weight.detach().clone()).ToArray();

            m.Merge(safe: true);
            AssertClose(reference, model.call(x), 1e-4, $"{name} merged");
            m.SetAdaptersEnabled(false);
            // PiSSA and OLoRA keep the residual in the base weight, so without the adapter the output is the residual's.
            if (!mutating) AssertClose(baseOutput, model.call(x), 1e-5, $"{name} disabled = base");
            m.SetAdaptersEnabled(true);
            AssertClose(reference, model.call(x), 1e-4, $"{name} re-enabled");
            m.Merge();
            m.Unmerge();
            for (int i = 0; i < baseWeights.Length; i++)
                AssertClose(baseWeights[i], m.AdaptedLayers[i].Value.weight, 1e-5, $"{config.GetType().Name} weight {i} after unmerge");
            AssertClose(reference, model.call(x), 1e-4, $"{config.GetType().Name} unmerged");

            m.MergeAndUnload();
            AssertClose(reference, model.call(x), 1e-4, $"{config.GetType().Name} merged and unloaded");
            Assert.IsFalse(model.named_modules().Any(n => n.module is LayerAdapter), "no adapter remains");
        }
    }

    [TestMethod]
    public void SafeMergeRefusesNonFiniteWeightsAndLeavesBaseUntouched()
    {
        using var scope = NewDisposeScope();
        var m = AdapterModel.Inject(NewModel(), new BoneConfig { R = 4, TargetModules = ["q_proj"] });
        var (path, layer) = m.AdaptedLayers[1];
        Tensor before = layer.weight.detach().clone();
        using (no_grad()) ((BoneLayer)layer.Adapter!).miss_block[0, 0] = tensor(float.NaN);
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => m.Merge(safe: true));
        StringAssert.Contains(e.Message, path);
        AssertClose(before, layer.weight, 0, "base weight unchanged");
        Assert.IsFalse(layer.Merged);
    }

    [TestMethod]
    public void PeftStateDictUsesPeftKeyNamesAndRoundTrips()
    {
        using var scope = NewDisposeScope();
        var source = AdapterModel.Inject(NewModel(1), new LoraConfig { R = 2, TargetModules = ["q_proj"], ModulesToSave = ["classifier"], Init = LoraInit.Gaussian });
        var keys = source.PeftStateDict().Select(p => p.Key).ToArray();
        CollectionAssert.AreEquivalent(new[]
        {
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
            "base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight",
            "base_model.model.classifier.dense.weight", "base_model.model.classifier.dense.bias",
            "base_model.model.classifier.out_proj.weight", "base_model.model.classifier.out_proj.bias",
        }, keys);

        var target = AdapterModel.Inject(NewModel(1), new LoraConfig { R = 2, TargetModules = ["q_proj"], ModulesToSave = ["classifier"] });
        var tensors = source.PeftStateDict().ToDictionary(p => p.Key, p => p.Value.detach().clone() + 0.5);
        target.LoadPeftStateDict(tensors, "adapter");
        foreach (var (key, t) in target.PeftStateDict()) AssertClose(tensors[key], t, 0, key);

        var extra = new Dictionary<string, Tensor>(tensors) { ["base_model.model.model.layers.0.mlp.up_proj.lora_A.weight"] = zeros(2, 8) };
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => target.LoadPeftStateDict(extra, "x.safetensors")).Message, "up_proj.lora_A.weight");
        var missing = new Dictionary<string, Tensor>(tensors);
        missing.Remove("base_model.model.classifier.out_proj.bias");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => target.LoadPeftStateDict(missing, "x.safetensors")).Message, "classifier.out_proj.bias' is missing");
        var wrongShape = new Dictionary<string, Tensor>(tensors) { ["base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight"] = zeros(8, 3) };
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => target.LoadPeftStateDict(wrongShape, "x.safetensors")).Message, "[8, 3]");
    }

    [TestMethod]
    public void ConvertingTheModelToBf16KeepsAdaptersFloat32()
    {
        using var scope = NewDisposeScope();
        var model = NewModel();
        var m = AdapterModel.Inject(model, new LoraConfig { R = 2, TargetModules = ["q_proj"] });
        model.to(ScalarType.BFloat16);
        Assert.AreEqual(ScalarType.BFloat16, m.AdaptedLayers[0].Value.weight.dtype);
        Assert.IsTrue(m.TrainableParameters().All(p => p.dtype == ScalarType.Float32));
        Assert.AreEqual(ScalarType.BFloat16, model.call(ToTensor(Input(2, 8)).to(ScalarType.BFloat16)).dtype);
    }
}
