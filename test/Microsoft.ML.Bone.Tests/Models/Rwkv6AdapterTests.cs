using System.Text.Json;
using Microsoft.ML.Bone.Adapters.StateTuning;
using Microsoft.ML.Bone.Models.Rwkv6;
using Microsoft.ML.Bone.Tasks;
using Microsoft.ML.Bone.Training;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.Models;

/// <summary>Bone, Bat, MiSS-mini, LoRA, PiSSA and state tuning on the real tiny RWKV-6.</summary>
[TestClass]
public sealed class Rwkv6AdapterTests
{
    private static Rwkv6ForCausalLM Tiny() => Rwkv6Checkpoint.Load(SharedData.Path("models", "tiny-rwkv-6v0-1m", "hf"));

    private static Tensor Ids() => tensor(System.Text.Encoding.Unicode.GetBytes("Once upon a time, there was a little girl.").Select(b => (long)b).ToArray()).unsqueeze(0);

    public static IEnumerable<object[]> Methods =>
    [
        [new BoneConfig { R = 16, TargetModules = Rwkv6Config.AllLinears }],
        [new BoneConfig { R = 32, Variant = BoneVariant.Bat, TargetModules = Rwkv6Config.AllLinears }],
        [new BoneConfig { R = 16, Variant = BoneVariant.Mini, MiniR = 8, TargetModules = Rwkv6Config.AllLinears }],
        [new LoraConfig { R = 4, Alpha = 8, TargetModules = Rwkv6Config.AllLinears }],
        [new LoraConfig { R = 4, Alpha = 8, Init = LoraInit.PiSSA, TargetModules = ["attention.key", "feed_forward.value"] }],
    ];

    [TestMethod]
    [DynamicData(nameof(Methods))]
    public void MergedEqualsUnmergedAndOnlyAdaptersGetGradients(AdapterConfig config)
    {
        using var scope = NewDisposeScope();
        using var model = Tiny();
        var adapted = AdapterModel.Inject(model, config);
        int expectedLayers = config.TargetModules.Count * 12;
        Assert.AreEqual(expectedLayers, adapted.AdaptedLayers.Count);
        using (no_grad())
            foreach (var p in adapted.TrainableParameters()) p.add_(0.02 * (arange(p.numel(), dtype: ScalarType.Float32) * 0.37).sin().reshape(p.shape));

        Tensor ids = Ids();
        model.train();
        Tensor loss = CausalLanguageModeling.Loss(model.Forward(ids), ids);
        loss.backward();
        var trainable = new HashSet<IntPtr>(adapted.TrainableParameters().Select(p => p.Handle));
        foreach (var (name, p) in model.named_parameters())
        {
            if (trainable.Contains(p.Handle)) Assert.IsTrue(p.grad is not null && p.grad.abs().sum().item<float>() > 0, $"{name} gets a gradient");
            else Assert.IsNull(p.grad, $"{name} is frozen");
        }

        model.eval();
        using var noGrad = no_grad();
        Tensor unmerged = model.Forward(ids);
        adapted.Merge(safe: true);
        AssertClose(unmerged, model.Forward(ids), 1e-4, $"{config.GetType().Name} merged");
        adapted.Unmerge();
        AssertClose(unmerged, model.Forward(ids), 1e-4, $"{config.GetType().Name} unmerged again");
    }

    [TestMethod]
    public void GradientCheckpointingGivesTheSameGradients()
    {
        using var scope = NewDisposeScope();
        Tensor[] Gradients(bool checkpointing, AdapterConfig config)
        {
            var model = Tiny();
            var adapted = AdapterModel.Inject(model, config);
            using (no_grad()) foreach (var p in adapted.TrainableParameters()) p.add_(0.01);
            model.train();
            model.GradientCheckpointing = checkpointing;
            Tensor ids = Ids();
            CausalLanguageModeling.Loss(model.Forward(ids), ids).backward();
            return adapted.TrainableParameters().Select(p => p.grad!.detach().clone()).ToArray();
        }
        foreach (AdapterConfig config in new AdapterConfig[] { new BoneConfig { R = 16, TargetModules = Rwkv6Config.AllLinears }, new StateTuningConfig() })
        {
            Tensor[] plain = Gradients(false, config), recomputed = Gradients(true, config);
            for (int i = 0; i < plain.Length; i++) AssertClose(plain[i], recomputed[i], 1e-6, $"{config.GetType().Name} gradient {i}");
        }
    }

    [TestMethod]
    public void PeftKeysUseTheHuggingFaceLayout()
    {
        using var scope = NewDisposeScope();
        using var model = Tiny();
        var adapted = AdapterModel.Inject(model, new BoneConfig { R = 16, TargetModules = Rwkv6Config.AllLinears });
        string[] keys = adapted.PeftStateDict().Select(p => p.Key).ToArray();
        Assert.HasCount(96, keys);
        CollectionAssert.Contains(keys, "base_model.model.rwkv.blocks.3.attention.receptance.miss_block");
        CollectionAssert.Contains(keys, "base_model.model.rwkv.blocks.11.feed_forward.value.miss_block");
    }

    // GSM8K as the tiny model reads text: UTF-16LE bytes, one token each.
    private static List<PromptResponse> Gsm8k(string split, int skip, int count)
    {
        var rows = new List<PromptResponse>();
        foreach (string line in File.ReadLines(SharedData.Path("gsm8k", split + ".jsonl")).Skip(skip).Take(count))
        {
            using var doc = JsonDocument.Parse(line);
            int[] Bytes(string s) => System.Text.Encoding.Unicode.GetBytes(s).Select(b => (int)b).ToArray();
            rows.Add(new PromptResponse(Bytes("Question: " + doc.RootElement.GetProperty("question").GetString() + "\nAnswer: "), Bytes(doc.RootElement.GetProperty("answer").GetString()!)));
        }
        return rows;
    }

    public static IEnumerable<object[]> FineTunes =>
    [
        // The initial state only shapes the start of each sequence (the tiny model's decays forget it within tokens), so
        // state tuning moves the mean loss less than an adapter on every projection does.
        ["Bone", new BoneConfig { R = 16, TargetModules = Rwkv6Config.AllLinears }, 1e-2, 0.1],
        ["state tuning", new StateTuningConfig(), 1e-1, 0.02],
    ];

    [TestMethod]
    [DynamicData(nameof(FineTunes))]
    public void FineTuningOnGsm8kTextLowersHeldOutLoss(string method, AdapterConfig config, double learningRate, double margin)
    {
        using var scope = NewDisposeScope();
        using var model = Tiny();
        List<PromptResponse> train = Gsm8k("train", 0, 96), heldOut = Gsm8k("test", 0, 16);
        const int maxLength = 320;
        double before = CausalLanguageModeling.Evaluate(model, heldOut, 0, maxLength, 8).MeanLoss;
        var adapted = AdapterModel.Inject(model, config);
        var options = new TrainingOptions { LearningRate = learningRate, BatchSize = 8, Epochs = 2, WarmupRatio = 0, Seed = 1 };
        CausalLanguageModeling.Train(model, adapted.TrainableParameters().ToList(), train, 0, maxLength, options);
        double after = CausalLanguageModeling.Evaluate(model, heldOut, 0, maxLength, 8).MeanLoss;
        Console.WriteLine($"{method}: held-out loss {before:F4} → {after:F4}");
        Assert.IsLessThan(before - margin, after, $"{method} lowers the held-out loss ({before:F4} → {after:F4})");
        if (config is StateTuningConfig)
        {
            Assert.AreEqual(12 * 8 * 8 * 8, adapted.Summary().Trainable, "L·H·N² parameters");
            Assert.IsTrue(model.rwkv.blocks.All(b => b.attention.time_state!.abs().sum().item<float>() > 0), "every layer's initial state moved");
        }
    }
}
