using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Models.Roberta;
using Microsoft.ML.Bone.Tests.Cli;
using Microsoft.ML.Bone.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.Adapters;

/// <summary>Adapters that do not fit, targets that overlap modules_to_save, and what a failure leaves behind.</summary>
[TestClass]
public sealed class InjectionFailureTests
{
    private string _dir = "";

    [TestInitialize]
    public void Init() => _dir = Directory.CreateTempSubdirectory("bone-inject-").FullName;

    [TestCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);

    [TestMethod]
    public void AFailedInjectionAttachesNothingAndChangesNoBaseWeight()
    {
        using var scope = NewDisposeScope();
        var model = TinyLlama.Create(TinyLlama.Config());
        var before = model.state_dict().ToDictionary(p => p.Key, p => p.Value.clone());
        // PiSSA r = 10 fits q_proj [16, 16] (and would rewrite it) but not k_proj [8, 16], which comes later.
        var config = new LoraConfig { R = 10, Init = LoraInit.PiSSA, TargetModules = ["q_proj", "k_proj"] };
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => AdapterModel.Inject(model, config)).Message, "k_proj");
        Assert.IsFalse(model.modules().OfType<AdaptableLinear>().Any(l => l.Adapter is not null), "no layer keeps an adapter");
        foreach (var (name, value) in model.state_dict())
            Assert.IsTrue(before[name].eq(value).all().item<bool>(), $"{name} unchanged");
        Assert.IsTrue(model.parameters().All(p => p.requires_grad), "nothing was frozen");
        // The model takes an adapter that fits afterwards.
        Assert.AreEqual(4, AdapterModel.Inject(model, new LoraConfig { R = 4, Init = LoraInit.PiSSA, TargetModules = ["q_proj", "k_proj"] }).AdaptedLayers.Count);
    }

    [TestMethod]
    public void TargetsInsideModulesToSaveAreNotAdaptedByAnyPath()
    {
        using var scope = NewDisposeScope();
        string modelDir = Path.Combine(_dir, "model"), adapterDir = Path.Combine(_dir, "adapter");
        var model = TinyRoberta.Create(modelDir);
        // "dense" also names classifier.dense, which PEFT leaves alone because the classifier is saved in full.
        var adapted = AdapterModel.Inject(model, new BoneConfig { R = 4, RandomInit = true, TargetModules = ["dense"], ModulesToSave = ["classifier"] });
        Assert.IsFalse(adapted.AdaptedLayers.Any(l => l.Key.StartsWith("classifier", StringComparison.Ordinal)));
        Assert.AreEqual(2 * 3, adapted.AdaptedLayers.Count);
        using (no_grad()) model.classifier.dense.bias!.add_(0.5);
        PeftAdapterDirectory.Save(adapted, adapterDir, modelDir, "SEQ_CLS");

        var reloaded = RobertaForSequenceClassification.FromPretrained(modelDir);
        PeftAdapterDirectory.Load(reloaded, adapterDir);
        Tensor ids = tensor(new long[] { 0, 7, 12, 33, 2 }).unsqueeze(0);
        using (no_grad()) AssertClose(model.call(ids, ones_like(ids)), reloaded.call(ids, ones_like(ids)), 1e-6, "library");

        var result = BoneCli.Run("logits", "--model", modelDir, "--adapter", adapterDir, "--ids", "0,7,12,33,2", "--out", Path.Combine(_dir, "l.safetensors"));
        Assert.AreEqual(0, result.ExitCode, result.StdErr);
        Assert.AreEqual(0, BoneCli.Run("merge", "--model", modelDir, "--adapter", adapterDir, "--out", Path.Combine(_dir, "merged")).ExitCode);
    }

    [TestMethod]
    public void AnAdapterThatDoesNotFitNamesTheAdapterFolder()
    {
        using var scope = NewDisposeScope();
        string adapterDir = Path.Combine(_dir, "bat");
        // A Bat adapter made for 8-wide blocks cannot go on a 20-wide model.
        var small = TinyLlama.Create(TinyLlama.Config() with { HiddenSize = 16, IntermediateSize = 24 });
        PeftAdapterDirectory.Save(AdapterModel.Inject(small, new BoneConfig { R = 8, Variant = BoneVariant.Bat, TargetModules = ["q_proj"] }), adapterDir);
        var other = TinyLlama.Create(TinyLlama.Config() with { HiddenSize = 20, NumAttentionHeads = 4, NumKeyValueHeads = 2, HeadDim = 4 });
        var e = Assert.ThrowsExactly<InvalidDataException>(() => PeftAdapterDirectory.Load(other, adapterDir));
        StringAssert.Contains(e.Message, Path.Combine(adapterDir, "adapter_config.json"));
        StringAssert.Contains(e.Message, "[r, r] blocks");
        Assert.IsFalse(other.modules().OfType<AdaptableLinear>().Any(l => l.Adapter is not null));
    }
}
