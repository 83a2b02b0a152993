using TorchSharp;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.Adapters;

/// <summary>Several named adapters on one base, as PEFT's add_adapter / set_adapter / disable_adapter / delete_adapter.</summary>
[TestClass]
public sealed class MultiAdapterTests
{
    private static readonly AdapterConfig BoneTask = new BoneConfig { R = 4, TargetModules = ["q_proj", "v_proj"], ModulesToSave = ["classifier"] };
    private static readonly AdapterConfig LoraTask = new LoraConfig { R = 2, Alpha = 4, TargetModules = ["q_proj", "up_proj"], ModulesToSave = ["classifier"] };
    private static readonly AdapterConfig BatTask = new BoneConfig { R = 4, Variant = BoneVariant.Bat, TargetModules = ["v_proj", "down_proj"] };

    // Fixed non-zero adapter values (and a changed head) that differ per adapter.
    private static void Fill(AdapterModel m, string name, int seed)
    {
        using var noGrad = no_grad();
        int i = 0;
        foreach (var (key, t) in m.PeftStateDict(name))
        {
            Tensor values = 0.05 * (arange(t.numel(), dtype: ScalarType.Float32) * 0.41 + seed + i++).sin();
            if (key.Contains(".classifier.", StringComparison.Ordinal)) t.add_(values.reshape(t.shape));
            else t.copy_(values.reshape(t.shape));
        }
    }

    /// <summary>The output of the base with only <paramref name="config"/> attached, filled as <see cref="Fill"/> does.</summary>
    private static Tensor Alone(AdapterConfig config, int seed, Tensor x)
    {
        var model = Deterministic(new TinyModel());
        var m = AdapterModel.Inject(model, config, name: "only");
        Fill(m, "only", seed);
        using var noGrad = no_grad();
        return model.call(x).detach().clone();
    }

    [TestMethod]
    public void EachActiveAdapterGivesItsOwnOutputsAndDisabledGivesTheBase()
    {
        using var scope = NewDisposeScope();
        Tensor x = ToTensor(Input(4, 8));
        var model = Deterministic(new TinyModel());
        Tensor baseOut;
        using (no_grad()) baseOut = model.call(x).detach().clone();

        var m = AdapterModel.Inject(model, BoneTask, name: "sentiment");
        Fill(m, "sentiment", 1);
        m.AddAdapter("topic", LoraTask);
        Fill(m, "topic", 2);
        m.AddAdapter("guide", BatTask);
        Fill(m, "guide", 3);
        CollectionAssert.AreEqual(new[] { "sentiment", "topic", "guide" }, m.AdapterNames.ToArray());
        Assert.AreEqual("sentiment", m.ActiveAdapter, "adding keeps the active adapter");

        Tensor bone = Alone(BoneTask, 1, x), lora = Alone(LoraTask, 2, x), bat = Alone(BatTask, 3, x);
        using var noGrad = no_grad();
        AssertClose(bone, model.call(x), 1e-5, "sentiment (Bone) active");
        // Switch back and forth: no reload, no re-merge, the same outputs each time.
        foreach (var (name, expected) in new[] { ("topic", lora), ("guide", bat), ("sentiment", bone), ("topic", lora) })
        {
            m.SetActiveAdapter(name);
            AssertClose(expected, model.call(x), 1e-5, $"{name} active");
        }
        m.SetAdaptersEnabled(false);
        AssertClose(baseOut, model.call(x), 1e-6, "all adapters disabled = base alone");
        m.SetAdaptersEnabled(true);
        AssertClose(lora, model.call(x), 1e-5, "re-enabled");

        // Deleting one leaves the others as they were.
        m.SetActiveAdapter("sentiment");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidOperationException>(() => m.DeleteAdapter("sentiment")).Message, "active adapter");
        m.DeleteAdapter("topic");
        CollectionAssert.AreEqual(new[] { "sentiment", "guide" }, m.AdapterNames.ToArray());
        Assert.IsFalse(model.state_dict().Keys.Any(k => k.Contains(".adapters.topic.", StringComparison.Ordinal)), "no tensor of the deleted adapter remains");
        AssertClose(bone, model.call(x), 1e-5, "sentiment after deleting topic");
        m.SetActiveAdapter("guide");
        AssertClose(bat, model.call(x), 1e-5, "guide after deleting topic");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => m.SetActiveAdapter("topic")).Message, "no adapter named 'topic'");
    }

    [TestMethod]
    public void OnlyTheActiveAdapterTrains()
    {
        using var scope = NewDisposeScope();
        var model = Deterministic(new TinyModel());
        var m = AdapterModel.Inject(model, BoneTask, name: "a");
        m.AddAdapter("b", LoraTask);
        Fill(m, "a", 1);
        Fill(m, "b", 2);
        m.SetActiveAdapter("b");
        var frozenA = m.PeftStateDict("a").ToDictionary(p => p.Key, p => p.Value.detach().clone());

        var optimizer = optim.SGD(m.TrainableParameters(), 0.1);
        Tensor x = ToTensor(Input(4, 8));
        model.call(x).square().sum().backward();
        optimizer.step();

        Assert.IsTrue(m.TrainableParameters().All(p => p.requires_grad));
        var trainable = new HashSet<IntPtr>(m.TrainableParameters().Select(p => p.Handle));
        foreach (var (name, p) in model.named_parameters())
            Assert.AreEqual(trainable.Contains(p.Handle), p.requires_grad, $"{name}: trains only when it belongs to the active adapter");
        foreach (var (key, before) in frozenA)
            AssertClose(before, m.PeftStateDict("a").Single(p => p.Key == key).Value, 0, $"{key} of the inactive adapter is unchanged");
        Assert.IsTrue(m.PeftStateDict("b").Any(p => p.Key.EndsWith("lora_B.weight", StringComparison.Ordinal) && p.Value.abs().sum().item<float>() > 0), "the active one moved");
    }

    [TestMethod]
    public void ModulesToSaveArePerAdapter()
    {
        using var scope = NewDisposeScope();
        var model = Deterministic(new TinyModel());
        Tensor baseHead = model.classifier.dense.weight.detach().clone();
        var m = AdapterModel.Inject(model, BoneTask, name: "a");
        m.AddAdapter("b", LoraTask);
        Fill(m, "a", 1);
        Fill(m, "b", 2);
        Tensor headA = m.PeftStateDict("a").Single(p => p.Key == "base_model.model.classifier.dense.weight").Value.detach().clone();
        Tensor headB = m.PeftStateDict("b").Single(p => p.Key == "base_model.model.classifier.dense.weight").Value.detach().clone();
        Assert.IsTrue((headA - headB).abs().max().item<float>() > 1e-4, "the two heads differ");
        AssertClose(headA, model.classifier.dense.weight, 0, "a's head is in the model while a is active");
        m.SetActiveAdapter("b");
        AssertClose(headB, model.classifier.dense.weight, 0, "b's head after switching");
        m.AddAdapter("c", BatTask);   // no modules to save: the base model's head
        m.SetActiveAdapter("c");
        AssertClose(baseHead, model.classifier.dense.weight, 0, "c uses the base head");
        m.SetActiveAdapter("a");
        AssertClose(headA, model.classifier.dense.weight, 0, "a's head is back");
    }

    [TestMethod]
    public void PissaCannotShareABase()
    {
        using var scope = NewDisposeScope();
        var m = AdapterModel.Inject(Deterministic(new TinyModel()), BoneTask, name: "a");
        var e = Assert.ThrowsExactly<ArgumentException>(() => m.AddAdapter("p", new LoraConfig { R = 2, Init = LoraInit.PiSSA, TargetModules = ["q_proj"] }));
        StringAssert.Contains(e.Message, "cannot share a base");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => m.AddAdapter("a", LoraTask)).Message, "already an adapter named 'a'");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => m.AddAdapter("bad name", LoraTask)).Message, "letters, digits");
    }
}
