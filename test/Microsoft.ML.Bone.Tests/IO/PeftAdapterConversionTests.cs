using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Models.Roberta;
using Microsoft.ML.Bone.Tests.Cli;
using Microsoft.ML.Bone.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.IO;

[TestClass]
public sealed class PeftAdapterConversionTests
{
    private string _dir = "";
    private string ModelDir => Path.Combine(_dir, "model");
    private string AdapterDir => Path.Combine(_dir, "adapter");
    private string OutDir => Path.Combine(_dir, "converted");

    [TestInitialize]
    public void Init() => _dir = Directory.CreateTempSubdirectory("bone-convert-").FullName;

    [TestCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);

    private static readonly long[,] Ids = { { 0, 5, 9, 13, 2, 1 }, { 0, 7, 3, 2, 1, 1 } };

    // Non-zero blocks (and head) that differ per tensor.
    private static void Fill(AdapterModel m)
    {
        using var noGrad = no_grad();
        int i = 0;
        foreach (var p in m.TrainableParameters()) p.add_(0.05 * (arange(p.numel(), dtype: ScalarType.Float32) * 0.53 + i++).cos().reshape(p.shape));
    }

    private Tensor LlamaLogits(string adapterDir)
    {
        var model = LlamaForCausalLM.FromPretrained(ModelDir);
        PeftAdapterDirectory.Load(model, adapterDir);
        using var noGrad = no_grad();
        return model.Forward(tensor(Ids)).detach();
    }

    private Tensor RobertaLogits(string adapterDir)
    {
        var model = RobertaForSequenceClassification.FromPretrained(ModelDir);
        PeftAdapterDirectory.Load(model, adapterDir);
        using var noGrad = no_grad();
        return model.Logits(tensor(Ids), tensor(Ids).ne(1).to(ScalarType.Int64)).detach();
    }

    [TestMethod]
    [DataRow(BoneVariant.Bone, 5, 1)]   // r = 5 divides none of 16, 8, 24: every layer pads its last chunk
    [DataRow(BoneVariant.Mini, 5, 4)]   // mini_r = 4 divides every output size (16, 8, 24)
    public void LlamaBoneBecomesAnExactLora(BoneVariant variant, int r, int miniR)
    {
        using var scope = NewDisposeScope();
        TinyLlama.Create(TinyLlama.Config()).SaveConfigAndWeights(ModelDir);
        var model = LlamaForCausalLM.FromPretrained(ModelDir);
        var adapted = AdapterModel.Inject(model, new BoneConfig { R = r, Variant = variant, MiniR = miniR, TargetModules = [TargetModuleMatcher.AllLinear] });
        Fill(adapted);
        PeftAdapterDirectory.Save(adapted, AdapterDir, taskType: "CAUSAL_LM");

        ConversionReport report = PeftAdapterConversion.Convert(AdapterDir, OutDir, PeftConversionTarget.Lora, ModelDir);
        Assert.AreEqual(2 * 7, report.Layers);

        var (config, tensors) = PeftAdapterDirectory.Read(OutDir);
        var lora = (LoraConfig)config.Config;
        Assert.AreEqual(r, lora.R);
        Assert.AreEqual(1.0, lora.Scale, "alpha = r: B·A is the Bone update itself");
        Assert.AreEqual("CAUSAL_LM", config.TaskType);
        // A is one-hot: A[c, k] = 1 iff k mod r = c; B = blockᵀ.
        Tensor a = tensors["base_model.model.model.layers.0.mlp.down_proj.lora_A.weight"];
        CollectionAssert.AreEqual(new long[] { r, 24 }, a.shape);
        for (int c = 0; c < r; c++)
            for (int k = 0; k < 24; k++)
                Assert.AreEqual(k % r == c ? 1f : 0f, a[c, k].item<float>(), $"A[{c}, {k}]");
        CollectionAssert.AreEqual(new long[] { 16, r }, tensors["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"].shape);

        using var noGrad = no_grad();
        Tensor original = model.Forward(tensor(Ids)).detach();
        AssertClose(original, LlamaLogits(OutDir), 1e-5, $"{variant} logits vs converted LoRA logits");
        Assert.IsTrue((original - LlamaLogits(AdapterDir)).abs().max().item<float>() < 1e-6, "the Bone folder reloads as it was");
    }

    [TestMethod]
    public void RobertaBoneWithItsHeadBecomesAnExactLora()
    {
        using var scope = NewDisposeScope();
        TinyRoberta.Create(ModelDir);
        var model = RobertaForSequenceClassification.FromPretrained(ModelDir);
        var adapted = AdapterModel.Inject(model, new BoneConfig { R = 6, TargetModules = ["query", "value", "intermediate.dense", "output.dense"], ModulesToSave = ["classifier"] });
        Fill(adapted);
        PeftAdapterDirectory.Save(adapted, AdapterDir, taskType: "SEQ_CLS");

        PeftAdapterConversion.Convert(AdapterDir, OutDir, PeftConversionTarget.Lora, ModelDir);
        var (config, tensors) = PeftAdapterDirectory.Read(OutDir);
        CollectionAssert.AreEquivalent(new[] { "classifier" }, config.Config.ModulesToSave.ToArray());
        Assert.IsTrue(tensors.ContainsKey("base_model.model.classifier.out_proj.weight"), "the trained head travels");
        // intermediate.dense has in_features 16, output.dense 32: r = 6 pads both.
        CollectionAssert.AreEqual(new long[] { 6, 32 }, tensors["base_model.model.roberta.encoder.layer.1.output.dense.lora_A.weight"].shape);

        using var noGrad = no_grad();
        Tensor original = model.Logits(tensor(Ids), tensor(Ids).ne(1).to(ScalarType.Int64)).detach();
        AssertClose(original, RobertaLogits(OutDir), 1e-5, "RoBERTa logits vs converted LoRA logits");
    }

    [TestMethod]
    public void MissAndBoneConvertIntoEachOther()
    {
        using var scope = NewDisposeScope();
        var model = Deterministic(new Adapters.TinyModel());
        var adapted = AdapterModel.Inject(model, new BoneConfig { R = 4, Variant = BoneVariant.Bat, TargetModules = ["q_proj"] });
        Fill(adapted);
        PeftAdapterDirectory.Save(adapted, AdapterDir);

        PeftAdapterConversion.Convert(AdapterDir, OutDir, PeftConversionTarget.Bone);
        var (bone, boneTensors) = PeftAdapterDirectory.Read(OutDir);
        Assert.AreEqual(PeftFormat.Bone, bone.Format);
        StringAssert.Contains(File.ReadAllText(Path.Combine(OutDir, "adapter_config.json")), "\"peft_type\": \"BONE\"");
        var (header, _) = HandWrittenSafetensors.ReadHeader(Path.Combine(OutDir, "adapter_model.safetensors"));
        Assert.IsTrue(header.RootElement.EnumerateObject().Any(p => p.Name.EndsWith(".q_proj.bone_block", StringComparison.Ordinal)), "BONE keys");

        string back = Path.Combine(_dir, "back");
        PeftAdapterConversion.Convert(OutDir, back, PeftConversionTarget.Miss);
        var (miss, missTensors) = PeftAdapterDirectory.Read(back);
        Assert.AreEqual(PeftFormat.Miss, miss.Format);
        Assert.AreEqual(BoneVariant.Bat, ((BoneConfig)miss.Config).Variant);
        foreach (var (key, t) in adapted.PeftStateDict())
        {
            AssertClose(t, boneTensors[key], 0, $"{key} via BONE");
            AssertClose(t, missTensors[key], 0, $"{key} via BONE and back");
        }
    }

    [TestMethod]
    public void BatHasNoLoraFormAndMiniHasNoBoneForm()
    {
        using var scope = NewDisposeScope();
        var model = Deterministic(new Adapters.TinyModel());
        PeftAdapterDirectory.Save(AdapterModel.Inject(model, new BoneConfig { R = 4, Variant = BoneVariant.Bat, TargetModules = ["q_proj"] }), AdapterDir);
        var bat = Assert.ThrowsExactly<InvalidDataException>(() => PeftAdapterConversion.Convert(AdapterDir, OutDir, PeftConversionTarget.Lora, _dir));
        StringAssert.Contains(bat.Message, "Bat");
        StringAssert.Contains(bat.Message, "bone merge");
        Assert.IsFalse(Directory.Exists(OutDir), "nothing written");

        string mini = Path.Combine(_dir, "mini");
        PeftAdapterDirectory.Save(AdapterModel.Inject(Deterministic(new Adapters.TinyModel()), new BoneConfig { R = 4, Variant = BoneVariant.Mini, MiniR = 2, TargetModules = ["q_proj"] }), mini);
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => PeftAdapterConversion.Convert(mini, OutDir, PeftConversionTarget.Bone)).Message, "no BONE form");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => PeftAdapterConversion.Convert(mini, OutDir, PeftConversionTarget.Lora)).Message, "needs the base model");
    }

    [TestMethod]
    public void TheCliConvertsAndExplainsFailures()
    {
        using var scope = NewDisposeScope();
        TinyLlama.Create(TinyLlama.Config()).SaveConfigAndWeights(ModelDir);
        var model = LlamaForCausalLM.FromPretrained(ModelDir);
        var adapted = AdapterModel.Inject(model, new BoneConfig { R = 4, TargetModules = ["q_proj", "v_proj"] });
        Fill(adapted);
        PeftAdapterDirectory.Save(adapted, AdapterDir);

        var ok = BoneCli.Run("convert", "--adapter", AdapterDir, "--to", "lora", "--model", ModelDir, "--out", OutDir);
        Assert.AreEqual(0, ok.ExitCode, ok.StdErr);
        StringAssert.Contains(ok.StdOut, "Converted 4 layers to LORA");
        using (no_grad()) AssertClose(model.Forward(tensor(Ids)).detach(), LlamaLogits(OutDir), 1e-5, "CLI-converted LoRA");

        BoneCli.AssertOneLineError(BoneCli.Run("convert", "--adapter", AdapterDir, "--to", "lora", "--out", Path.Combine(_dir, "x")), "needs the base model", "--model");
        BoneCli.AssertOneLineError(BoneCli.Run("convert", "--adapter", AdapterDir, "--to", "miss", "--out", OutDir), "not empty");
    }
}
