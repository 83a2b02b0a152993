using Microsoft.ML.Bone.Models.Rwkv6;
using Microsoft.ML.Bone.Tests.Cli;

namespace Microsoft.ML.Bone.Tests.CausalLM;

/// <summary>The real tiny RWKV-6 through mlContext.Bone.CausalLM and the `bone` command, as an RWKV user brings it (rwkv.cpp file, byte tokenizer).</summary>
[TestClass]
public sealed class Rwkv6PipelineTests
{
    private static string _dir = "";
    private static string _tokenizer = "";

    private sealed class Problem
    {
        public string Prompt { get; set; } = "";
        public string Response { get; set; } = "";
    }

    [ClassInitialize]
    public static void WriteTokenizer(TestContext _)
    {
        _dir = Directory.CreateTempSubdirectory("bone-rwkv-").FullName;
        // The tiny model reads UTF-16LE bytes. Byte 0 follows every ASCII character, so the end of a text is '\n' (10).
        _tokenizer = Path.Combine(_dir, "byte_tokenizer.json");
        File.WriteAllText(_tokenizer, new ByteTokenizer(ByteTokenizerEncoding.Utf16LE, eosId: 10, padId: 0).ToJson());
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_dir, recursive: true);

    private static string Model => SharedData.Path("models", "tiny-rwkv-6v0-1m", "tiny-rwkv-6v0-1m-FP32.bin");

    private static IDataView Gsm8k(MLContext ml, string split, int skip, int rows) => ml.Data.LoadFromEnumerable(
        File.ReadLines(SharedData.Path("gsm8k", split + ".jsonl")).Skip(skip).Take(rows).Select(line =>
        {
            using var doc = System.Text.Json.JsonDocument.Parse(line);
            return new Problem { Prompt = doc.RootElement.GetProperty("question").GetString()!, Response = doc.RootElement.GetProperty("answer").GetString()! };
        }).ToList());

    private static BoneCausalLMOptions Options(AdapterKind adapter, double learningRate, int maxSteps = 0) => new()
    {
        ModelPath = Model, TokenizerPath = _tokenizer, Adapter = adapter, Rank = 16, LearningRate = learningRate, MaxEpochs = 2, MaxSteps = maxSteps,
        BatchSize = 8, MaxSequenceLength = 320, MaxNewTokens = 8, PromptTemplate = "Question: {prompt}\nAnswer: ", WarmupRatio = 0,
    };

    [TestMethod]
    [DataRow(AdapterKind.Bone, 1e-2, 0.1)]
    [DataRow(AdapterKind.StateTuning, 1e-1, 0.02)]
    public void FineTuningTheRwkvCppFileLowersHeldOutLossAndTheZipReloads(AdapterKind adapter, double learningRate, double margin)
    {
        var ml = new MLContext(seed: 1);
        IDataView train = Gsm8k(ml, "train", 0, 96), heldOut = Gsm8k(ml, "test", 0, 16);
        // One step at a vanishing rate: the zero-initialised adapter, i.e. the base model, through the same pipeline.
        using BoneCausalLMTransformer untrained = ml.Bone.CausalLM(Options(adapter, 1e-12, maxSteps: 1)).Fit(ml.Data.TakeRows(train, 8));
        double before = ml.Bone.EvaluateCausalLM(untrained, heldOut).MeanLoss;
        using BoneCausalLMTransformer fitted = ml.Bone.CausalLM(Options(adapter, learningRate)).Fit(train);
        double after = ml.Bone.EvaluateCausalLM(fitted, heldOut).MeanLoss;
        Console.WriteLine($"{adapter}: held-out loss per byte {before:F4} → {after:F4}");
        Assert.IsLessThan(before - margin, after, $"{adapter} lowers the held-out loss ({before:F4} → {after:F4})");

        string zip = Path.Combine(_dir, $"{adapter}.zip");
        ml.Model.Save(fitted, train.Schema, zip);
        string[] prompts = ["Tom has 3 apples and buys 2 more. How many apples does he have?"];
        using var reloaded = (BoneCausalLMTransformer)new MLContext().Model.Load(zip, out _);
        CollectionAssert.AreEqual(fitted.Complete(prompts).ToArray(), reloaded.Complete(prompts).ToArray(), "completions after reload");
        Assert.AreEqual(after, ml.Bone.EvaluateCausalLM(reloaded, heldOut).MeanLoss, 1e-5, "held-out loss after reload");
    }

    [TestMethod]
    public void TheCliTrainsScoresAndMergesRwkv()
    {
        string data = Path.Combine(_dir, "train.jsonl");
        File.WriteAllLines(data, File.ReadLines(SharedData.Path("gsm8k", "train.jsonl")).Take(16));
        string zip = Path.Combine(_dir, "cli.zip");
        var train = BoneCli.Run("lm", "train", "--model", Model, "--tokenizer", _tokenizer, "--train", data, "--adapter", "Bat", "--rank", "32", "--epochs", "1", "--batch-size", "8", "--max-length", "200", "--out", zip);
        Assert.AreEqual(0, train.ExitCode, train.StdErr);
        StringAssert.Contains(train.StdOut, "trainable params");

        // logits of the rwkv.cpp reference input, from the rwkv.cpp file: one row per token, the last being rwkv.cpp's expected logits.
        string logits = Path.Combine(_dir, "logits.safetensors");
        var run = BoneCli.Run("logits", "--model", Model, "--ids", "34,105,110", "--out", logits);
        Assert.AreEqual(0, run.ExitCode, run.StdErr);
        float[] all = IO.HandWrittenSafetensors.ReadF32(logits, "logits");
        Assert.HasCount(3 * 256, all);
        byte[] expectedBytes = File.ReadAllBytes(SharedData.Path("models", "tiny-rwkv-6v0-1m", "expected-logits-6v0-1m.bin"));
        for (int i = 0; i < 256; i++) Assert.AreEqual(BitConverter.ToSingle(expectedBytes, 4 * i), all[2 * 256 + i], 2e-3, $"logit {i}");

        // merge: a PEFT (MISS) adapter folded into the rwkv.cpp file, written as a BlinkDL .pth and as a Hugging Face folder.
        using var scope = TorchSharp.torch.NewDisposeScope();
        using var adaptedModel = Rwkv6Checkpoint.Load(Model);
        var adapted = AdapterModel.Inject(adaptedModel, new BoneConfig { R = 16, TargetModules = Rwkv6Config.AllLinears });
        using (TorchSharp.torch.no_grad())
            foreach (var p in adapted.TrainableParameters()) p.add_(0.01 * TorchSharp.torch.arange(p.numel(), dtype: TorchSharp.torch.ScalarType.Float32).sin().reshape(p.shape));
        string adapterDir = Path.Combine(_dir, "adapter");
        PeftAdapterDirectory.Save(adapted, adapterDir);
        var ids = TorchSharp.torch.tensor(new long[] { 79, 0, 110, 0, 99, 0, 101, 0 }).unsqueeze(0);
        TorchSharp.torch.Tensor expected;
        using (TorchSharp.torch.no_grad()) expected = adaptedModel.Forward(ids);
        foreach (string output in new[] { Path.Combine(_dir, "merged.pth"), Path.Combine(_dir, "merged-hf") })
        {
            var merged = BoneCli.Run("merge", "--model", Model, "--adapter", adapterDir, "--out", output);
            Assert.AreEqual(0, merged.ExitCode, merged.StdErr);
            using var plain = Rwkv6Checkpoint.Load(output);
            Assert.IsFalse(plain.modules().OfType<AdaptableLinear>().Any(l => l.Adapters.Count > 0));
            using (TorchSharp.torch.no_grad()) Adapters.Fixtures.AssertClose(expected, plain.Forward(ids), 1e-4, $"merged into {Path.GetFileName(output)}");
        }
    }
}
