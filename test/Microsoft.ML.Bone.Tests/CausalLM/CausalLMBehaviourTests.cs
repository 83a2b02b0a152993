using Microsoft.ML.Bone.Models.Llama;
using TorchSharp;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.CausalLM;

/// <summary>Causal-LM pipelines as ML.NET users write them: later steps, merged exports, bad lengths and tokenizers.</summary>
[TestClass]
public sealed class CausalLMBehaviourTests
{
    private static string _dir = "";
    private static string _model = "";

    [ClassInitialize]
    public static void CreateModel(TestContext _)
    {
        _dir = Directory.CreateTempSubdirectory("bone-lm-habits-").FullName;
        _model = Gsm8kPipelineTests.TinyLlama2(Path.Combine(_dir, "tiny"));
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_dir, recursive: true);

    private sealed class Pair
    {
        public string Prompt { get; set; } = "";
        public string Response { get; set; } = "";
    }

    private static IDataView Data(MLContext ml) =>
        ml.Data.LoadFromEnumerable(Enumerable.Range(0, 8).Select(i => new Pair { Prompt = $"What is {i} + 1?", Response = $"#### {i + 1}" }));

    private static BoneCausalLMOptions Options() => new() { ModelPath = _model, Rank = 4, MaxEpochs = 1, BatchSize = 4, MaxSequenceLength = 64, MaxNewTokens = 3, LearningRate = 1e-2 };

    [TestMethod]
    public void EvaluateCausalLMFindsTheModelBehindLaterPipelineSteps()
    {
        var ml = new MLContext(seed: 1);
        var fitted = ml.Bone.CausalLM(Options()).Append(ml.Transforms.CopyColumns("Answer", "Completion")).Fit(Data(ml));
        IDataView scored = fitted.Transform(Data(ml));
        CausalLMEvaluation metrics = ml.Bone.EvaluateCausalLM(scored);
        var direct = ml.Bone.EvaluateCausalLM(fitted.OfType<BoneCausalLMTransformer>().Single(), Data(ml));
        Assert.AreEqual(8, metrics.Count);
        Assert.AreEqual(direct.MeanLoss, metrics.MeanLoss, 1e-9);
        Assert.IsNotNull(metrics.AnswerAccuracy);
        Assert.AreEqual(metrics.AnswerAccuracy, ml.Bone.EvaluateCausalLM(scored, "Answer").AnswerAccuracy, "the copied column reads the same");
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ml.Bone.EvaluateCausalLM(Data(ml))).Message, "No column of the data was made by a BoneCausalLMTransformer");
    }

    [TestMethod]
    public void TheMergedExportLoadsAsAPlainCheckpointWithTheSameLogits()
    {
        var ml = new MLContext(seed: 1);
        var options = Options();
        options.Adapter = AdapterKind.Bat;
        BoneCausalLMTransformer fitted = ml.Bone.CausalLM(options).Fit(Data(ml));
        string merged = Path.Combine(_dir, "merged");
        fitted.ExportMergedModel(merged);
        CollectionAssert.IsSubsetOf(new[] { "config.json", "model.safetensors", "tokenizer.model" }, Directory.GetFiles(merged).Select(Path.GetFileName).ToArray());

        using var scope = NewDisposeScope();
        var plain = LlamaForCausalLM.FromPretrained(merged);
        Assert.IsFalse(plain.modules().OfType<AdaptableLinear>().Any(l => l.Adapter is not null));
        Tensor ids = tensor(new long[] { 1, 1724, 338, 29871, 29906, 718, 29871, 29896 }).unsqueeze(0);
        using var noGrad = no_grad();
        Tensor expected = fitted.Model.Trained.Use((m, _) => ((ICausalLanguageModel)m).Forward(ids));
        AssertClose(expected, plain.Forward(ids), 1e-4, "merged checkpoint");
    }

    [TestMethod]
    public void AMaxSequenceLengthBeyondThePositionsOrAForeignTokenizerIsNamedBeforeTraining()
    {
        var ml = new MLContext(seed: 1);
        var options = Options();
        options.MaxSequenceLength = 1024;   // the tiny model was trained for 256
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Bone.CausalLM(options).Fit(Data(ml)));
        Assert.AreEqual("MaxSequenceLength", e.ParamName);
        StringAssert.Contains(e.Message, "256 positions");

        // llama2.c's stories260K has a 512-token vocabulary; LLaMA-2's tokenizer makes ids up to 31,999.
        options = Options();
        options.ModelPath = SharedData.Path("models", "stories260K", "stories260K.bin");
        options.TokenizerPath = Path.Combine(_model, "tokenizer.model");
        var foreign = Assert.ThrowsExactly<InvalidDataException>(() => ml.Bone.CausalLM(options).Fit(Data(ml)));
        StringAssert.Contains(foreign.Message, "vocab_size 512");
        StringAssert.Contains(foreign.Message, "TokenizerPath");
    }
}
