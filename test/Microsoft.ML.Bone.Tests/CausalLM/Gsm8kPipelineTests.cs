using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.CausalLM;

[TestClass]
public sealed class Gsm8kPipelineTests
{
    private sealed class Problem
    {
        public string Prompt { get; set; } = "";
        public string Response { get; set; } = "";
    }

    private static IDataView Load(MLContext ml, string split, int rows)
    {
        var problems = File.ReadLines(SharedData.Path("gsm8k", split + ".jsonl")).Take(rows).Select(line =>
        {
            using var doc = System.Text.Json.JsonDocument.Parse(line);
            return new Problem { Prompt = doc.RootElement.GetProperty("question").GetString()!, Response = doc.RootElement.GetProperty("answer").GetString()! };
        }).ToList();
        return ml.Data.LoadFromEnumerable(problems);
    }

    /// <summary>A small random LLaMA with LLaMA-2's vocabulary and tokenizer, in the Hugging Face layout.</summary>
    internal static string TinyLlama2(string directory)
    {
        var config = new LlamaConfig
        {
            VocabSize = 32000, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, HeadDim = 8,
            MaxPositionEmbeddings = 256, RmsNormEps = 1e-5, RopeTheta = 10000, TieWordEmbeddings = true,
        };
        var model = new LlamaForCausalLM(config);
        var generator = new torch.Generator(11);
        using (no_grad())
            foreach (var (_, p) in model.named_parameters())
                if (p.ndim == 2) p.copy_(randn(p.shape, generator: generator) * 0.1);
        model.SaveConfigAndWeights(directory);
        File.Copy(SharedData.Path("tokenizers", "llama2", "tokenizer.model"), Path.Combine(directory, "tokenizer.model"));
        return directory;
    }

    [TestMethod]
    [Timeout(600_000)]
    public void TokenizeTrainGenerateAndScoreGsm8k()
    {
        string dir = Directory.CreateTempSubdirectory("bone-gsm8k-").FullName;
        try
        {
            var ml = new MLContext(seed: 1);
            string modelDir = TinyLlama2(Path.Combine(dir, "tiny"));
            IDataView train = Load(ml, "train", 240), test = Load(ml, "test", 8);
            var trainer = ml.Bone.CausalLM(new BoneCausalLMOptions
            {
                ModelPath = modelDir, Adapter = AdapterKind.Bone, Rank = 8, LearningRate = 1e-2, MaxEpochs = 1, BatchSize = 8,
                MaxSequenceLength = 160, MaxNewTokens = 12, StopStrings = ["\n\n"],
            });
            BoneCausalLMTransformer model = trainer.Fit(train);
            double early = model.TrainingHistory.Take(5).Average(h => h.Loss), late = model.TrainingHistory.TakeLast(5).Average(h => h.Loss);
            Console.WriteLine($"GSM8K training loss {early:F3} -> {late:F3} over {model.TrainingHistory.Count} steps; {model.ParameterSummary}");
            Assert.IsTrue(late < early - 0.25, $"loss {early:F3} -> {late:F3}");

            IDataView scored = model.Transform(test);
            CausalLMEvaluation metrics = ml.Bone.EvaluateCausalLM(scored);
            Console.WriteLine($"GSM8K test: {metrics}");
            Assert.AreEqual(8, metrics.Count);
            Assert.IsNotNull(metrics.AnswerAccuracy);
            Assert.AreEqual(Math.Exp(metrics.MeanLoss), metrics.Perplexity, 1e-9);
            string[] completions = ml.Data.CreateEnumerable<Completed>(scored, false).Select(c => c.Completion).ToArray();
            Assert.HasCount(8, completions);

            string zip = Path.Combine(dir, "gsm8k.zip");
            ml.Model.Save(model, test.Schema, zip);
            var fresh = new MLContext();
            ITransformer loaded = fresh.Bone.LoadModel(zip, out _);
            CollectionAssert.AreEqual(completions, fresh.Data.CreateEnumerable<Completed>(loaded.Transform(test), false).Select(c => c.Completion).ToArray(), "same completions after reload");
            var engine = fresh.Model.CreatePredictionEngine<Problem, Completed>(loaded);
            Assert.AreEqual(completions[0], engine.Predict(ml.Data.CreateEnumerable<Problem>(test, false).First()).Completion, "PredictionEngine");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    private sealed class Completed
    {
        public string Completion { get; set; } = "";
    }
}
