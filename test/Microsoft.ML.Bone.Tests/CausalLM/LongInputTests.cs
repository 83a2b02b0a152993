using Microsoft.ML.Bone.Tasks;
using Microsoft.ML.Bone.Tests.TextClassification;

namespace Microsoft.ML.Bone.Tests.CausalLM;

/// <summary>
/// Inputs longer than a model's positions are cut to fit, with a warning in the MLContext's log: training examples to
/// MaxSequenceLength, and prompts at generation time to the positions left after the tokens to generate.
/// </summary>
[TestClass]
public sealed class LongInputTests
{
    private static string _dir = "";
    private static string _llama = "";

    [ClassInitialize]
    public static void CreateModels(TestContext _)
    {
        _dir = Directory.CreateTempSubdirectory("bone-long-").FullName;
        _llama = Gsm8kPipelineTests.TinyLlama2(Path.Combine(_dir, "llama"));   // 256 positions
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_dir, recursive: true);

    private sealed class Pair
    {
        public string Prompt { get; set; } = "";
        public string Response { get; set; } = "";
    }

    private static List<string> Warnings(MLContext ml)
    {
        var warnings = new List<string>();
        ml.Log += (_, e) => { if (e.Kind == Microsoft.ML.Runtime.ChannelMessageKind.Warning && e.RawMessage.StartsWith("warning:", StringComparison.Ordinal)) lock (warnings) warnings.Add(e.RawMessage); };
        return warnings;
    }

    private static string Words(int count) => string.Join(" ", Enumerable.Range(0, count).Select(i => $"word{i % 7}"));

    [TestMethod]
    public void LongTrainingExamplesAndPromptsAreCutToFitWithAWarning()
    {
        var ml = new MLContext(seed: 1);
        List<string> warnings = Warnings(ml);
        var rows = Enumerable.Range(0, 8).Select(i => new Pair { Prompt = i < 3 ? Words(60) : "add two", Response = "four" }).ToList();
        using var model = ml.Bone.CausalLM(new BoneCausalLMOptions
        {
            ModelPath = _llama, Rank = 4, MaxEpochs = 1, BatchSize = 4, MaxSequenceLength = 32, MaxNewTokens = 200, PromptTemplate = "{prompt}", StopStrings = [],
        }).Fit(ml.Data.LoadFromEnumerable(rows));
        Assert.IsTrue(warnings.Any(w => w.Contains("3 of 8 training examples are longer than MaxSequenceLength (32 tokens)")), string.Join("\n", warnings));

        // 256 positions, 200 tokens to generate: a prompt keeps BOS and its last 127 tokens (half the positions), and
        // at most 128 tokens are generated.
        string prompt = Words(300);
        warnings.Clear();
        string completion = model.Complete([prompt])[0];
        Assert.IsTrue(warnings.Any(w => w.Contains("1 of 1 prompts are longer than the 128 tokens")), string.Join("\n", warnings));
        Assert.IsTrue(warnings.Any(w => w.Contains("at most 128 tokens are generated (not MaxNewTokens = 200)")), string.Join("\n", warnings));

        // The same completion from the documented cut, generated directly.
        string expected = model.Model.Trained.Use((m, _) =>
        {
            var lm = (ICausalLanguageModel)m;
            int[] ids = model.Model.Tokenizer.Encode(prompt, addBos: true);
            Assert.IsTrue(ids.Length > 300, "the prompt is long");
            int[] cut = [ids[0], .. ids[^127..]];
            var generated = TextGeneration.Generate(lm, [cut], new GenerationOptions { MaxNewTokens = 128 }, new HashSet<int>(lm.EosTokenIds) { model.Model.Tokenizer.EosId }, model.Model.Tokenizer.PadId);
            return model.Model.Tokenizer.Decode(generated[0]);
        });
        Assert.AreEqual(expected, completion);

        // A prompt that fits is left alone, silently.
        warnings.Clear();
        _ = model.Complete(["add two"]);
        Assert.IsFalse(warnings.Any(w => w.Contains("prompts are longer")), string.Join("\n", warnings));
    }

    private sealed class Row
    {
        public string Sentence1 { get; set; } = "";
        public string Label { get; set; } = "";
    }

    [TestMethod]
    public void LongClassificationRowsAreTruncatedWithAWarning()
    {
        string roberta = GlueData.TinyModel(Path.Combine(_dir, "roberta"), hidden: 16);
        var ml = new MLContext(seed: 1);
        List<string> warnings = Warnings(ml);
        var rows = Enumerable.Range(0, 8).Select(i => new Row { Sentence1 = i == 0 ? Words(40) : "good film", Label = (i % 2).ToString() }).ToList();
        var options = new BoneTextClassificationOptions { ModelPath = roberta, Rank = 4, MaxEpochs = 1, BatchSize = 4, MaxSequenceLength = 16 };
        using var fitted = (IDisposable)ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Fit(ml.Data.LoadFromEnumerable(rows));
        Assert.IsTrue(warnings.Any(w => w.Contains("1 of 8 training rows are longer than MaxSequenceLength (16 tokens)")), string.Join("\n", warnings));
    }
}
