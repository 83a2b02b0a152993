using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.Reliability;

/// <summary>
/// A tokenizer that produces ids the model has no embedding for is refused before training, naming the tokenizer and
/// the file the model's vocabulary comes from: an out-of-range id would otherwise index past the embedding table.
/// </summary>
[TestClass]
public sealed class TokenizerModelMismatchTests
{
    private sealed class Pair
    {
        public string Prompt { get; set; } = "";
        public string Response { get; set; } = "";
    }

    private sealed class Row
    {
        public string Sentence1 { get; set; } = "";
        public string Label { get; set; } = "";
    }

    [TestMethod]
    public void ALlamaTokenizerBiggerThanTheModelIsRefused()
    {
        string dir = Directory.CreateTempSubdirectory("bone-vocab-").FullName;
        try
        {
            var config = new LlamaConfig
            {
                VocabSize = 1000, HiddenSize = 16, IntermediateSize = 32, NumHiddenLayers = 1, NumAttentionHeads = 2, NumKeyValueHeads = 2, HeadDim = 8,
                MaxPositionEmbeddings = 64, RmsNormEps = 1e-5, RopeTheta = 10000,
            };
            using (var model = new LlamaForCausalLM(config)) model.SaveConfigAndWeights(dir);
            File.Copy(SharedData.Path("tokenizers", "llama2", "tokenizer.model"), Path.Combine(dir, "tokenizer.model"));
            var ml = new MLContext(seed: 1);
            var data = ml.Data.LoadFromEnumerable(new[] { new Pair { Prompt = "a", Response = "b" } });
            var e = Assert.ThrowsExactly<InvalidDataException>(() => ml.Bone.CausalLM(new BoneCausalLMOptions { ModelPath = dir, MaxEpochs = 1, MaxSequenceLength = 32 }).Fit(data));
            StringAssert.Contains(e.Message, "tokenizer.model");
            StringAssert.Contains(e.Message, Path.Combine(dir, "config.json"));
            StringAssert.Contains(e.Message, "vocab_size 1000");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [TestMethod]
    public void ARobertaVocabularyBiggerThanTheModelIsRefused()
    {
        string dir = Directory.CreateTempSubdirectory("bone-vocab-").FullName;
        try
        {
            TinyRoberta.Create(dir, labels: 2).Dispose();   // vocab_size 50
            foreach (string file in new[] { "vocab.json", "merges.txt" })
                File.Copy(SharedData.Path("tokenizers", "roberta", file), Path.Combine(dir, file));
            var ml = new MLContext(seed: 1);
            var data = ml.Data.LoadFromEnumerable(new[] { new Row { Sentence1 = "good", Label = "1" }, new Row { Sentence1 = "bad", Label = "0" } });
            var e = Assert.ThrowsExactly<InvalidDataException>(() => ml.Transforms.Conversion.MapValueToKey("Label")
                .Append(ml.Bone.TextClassification(new BoneTextClassificationOptions { ModelPath = dir, MaxEpochs = 1, MaxSequenceLength = 16 })).Fit(data));
            StringAssert.Contains(e.Message, "vocab.json");
            StringAssert.Contains(e.Message, Path.Combine(dir, "config.json"));
            StringAssert.Contains(e.Message, "vocab_size 50");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
