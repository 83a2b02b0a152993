using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Tests.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.CausalLM;

/// <summary>The causal-LM trainer picks the architecture from config.json: a tiny Qwen2 with a byte-level BPE tokenizer.</summary>
[TestClass]
public sealed class Qwen2PipelineTests
{
    private sealed class Pair
    {
        public string Prompt { get; set; } = "";
        public string Response { get; set; } = "";
    }

    private sealed class Completed
    {
        public string Completion { get; set; } = "";
    }

    [TestMethod]
    public void FitsSavesAndReloadsAQwen2Model()
    {
        string dir = Directory.CreateTempSubdirectory("bone-qwen2-").FullName;
        try
        {
            var config = new LlamaConfig
            {
                ModelType = "qwen2", VocabSize = 50258, HiddenSize = 16, IntermediateSize = 32, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2,
                HeadDim = 4, MaxPositionEmbeddings = 128, RmsNormEps = 1e-6, RopeTheta = 1e6, TieWordEmbeddings = true, QkvBias = true, BosTokenId = null, EosTokenIds = [50256],
            };
            var model = new LlamaForCausalLM(config);
            model.SaveConfigAndWeights(dir);
            foreach (var (name, bytes) in ByteLevelBpeTokenizerTests.Gpt2Files("""{"added_tokens_decoder":{"50257":{"content":"<|im_start|>"}}}""").Files)
                File.WriteAllBytes(Path.Combine(dir, name), bytes);

            var ml = new MLContext(seed: 1);
            var pairs = Enumerable.Range(0, 16).Select(i => new Pair { Prompt = $"What is {i} plus one?", Response = $"{i + 1}" }).ToList();
            IDataView data = ml.Data.LoadFromEnumerable(pairs);
            var fitted = ml.Bone.CausalLM(new BoneCausalLMOptions
            {
                ModelPath = dir, Rank = 4, MaxEpochs = 1, BatchSize = 8, MaxSequenceLength = 64, MaxNewTokens = 4, LearningRate = 1e-2, PromptTemplate = "<|im_start|>{prompt}\n",
                GradientCheckpointing = true,
            }).Fit(data);
            Assert.AreEqual(2, fitted.TrainingHistory.Count);
            string[] completions = ml.Data.CreateEnumerable<Completed>(fitted.Transform(data), false).Select(c => c.Completion).ToArray();

            string zip = Path.Combine(dir, "qwen2.zip");
            ml.Model.Save(fitted, data.Schema, zip);
            var loaded = new MLContext().Bone.LoadModel(zip, out _);
            CollectionAssert.AreEqual(completions, ml.Data.CreateEnumerable<Completed>(loaded.Transform(data), false).Select(c => c.Completion).ToArray());
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
