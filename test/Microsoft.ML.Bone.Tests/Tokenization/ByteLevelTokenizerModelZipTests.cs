using Microsoft.ML.Bone.Models.Llama;

namespace Microsoft.ML.Bone.Tests.Tokenization;

/// <summary>The byte and RWKV World tokenizers drive the causal-LM trainer and travel inside its model zip.</summary>
[TestClass]
public sealed class ByteLevelTokenizerModelZipTests
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
    public void AByteTokenizerModelSavesAndReloadsWithoutItsFile() =>
        FitSaveReload(vocabSize: 256, eos: 0, dir => File.WriteAllText(Path.Combine(dir, ByteTokenizer.FileName), new ByteTokenizer(ByteTokenizerEncoding.Utf8, eosId: 0).ToJson()), ByteTokenizer.FileName);

    [TestMethod]
    public void AWorldTokenizerModelSavesAndReloadsWithoutItsFile() =>
        FitSaveReload(vocabSize: 65536, eos: 0, dir => File.Copy(SharedData.Path("tokenizers", "rwkv", RwkvWorldTokenizer.FileName), Path.Combine(dir, RwkvWorldTokenizer.FileName)), RwkvWorldTokenizer.FileName);

    private static void FitSaveReload(int vocabSize, int eos, Action<string> writeTokenizer, string tokenizerFile)
    {
        string dir = Directory.CreateTempSubdirectory("bone-bytes-lm-").FullName;
        try
        {
            var config = new LlamaConfig
            {
                VocabSize = vocabSize, HiddenSize = 16, IntermediateSize = 32, NumHiddenLayers = 1, NumAttentionHeads = 2, NumKeyValueHeads = 2, HeadDim = 8,
                MaxPositionEmbeddings = 128, RmsNormEps = 1e-6, TieWordEmbeddings = true, BosTokenId = null, EosTokenIds = [eos],
            };
            new LlamaForCausalLM(config).SaveConfigAndWeights(dir);
            writeTokenizer(dir);

            var ml = new MLContext(seed: 1);
            IDataView data = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 8).Select(i => new Pair { Prompt = $"{i}+1=", Response = $"{i + 1}" }).ToList());
            var fitted = ml.Bone.CausalLM(new BoneCausalLMOptions
            {
                ModelPath = dir, Rank = 2, MaxEpochs = 1, BatchSize = 8, MaxSequenceLength = 48, MaxNewTokens = 3, LearningRate = 1e-2, PromptTemplate = "{prompt}",
            }).Fit(data);
            string[] completions = ml.Data.CreateEnumerable<Completed>(fitted.Transform(data), false).Select(c => c.Completion).ToArray();

            string zip = Path.Combine(dir, "model.zip");
            ml.Model.Save(fitted, data.Schema, zip);
            File.Delete(Path.Combine(dir, tokenizerFile));
            var loaded = new MLContext().Bone.LoadModel(zip, out _);
            CollectionAssert.AreEqual(completions, ml.Data.CreateEnumerable<Completed>(loaded.Transform(data), false).Select(c => c.Completion).ToArray());
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
