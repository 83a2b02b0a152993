using System.IO.Compression;
using Microsoft.ML.Bone.Models.Llama;

namespace Microsoft.ML.Bone.Tests.Reliability;

/// <summary>The model zip the fuzzers mutate: small enough to load thousands of times, real in every part.</summary>
internal static class FuzzModelZip
{
    private sealed class Pair
    {
        public string Prompt { get; set; } = "";
        public string Response { get; set; } = "";
    }

    /// <summary>Trains a Bone adapter on a tiny LLaMA (byte tokenizer) in <paramref name="directory"/>; returns the zip's path.</summary>
    public static string Create(string directory)
    {
        string model = Path.Combine(directory, "base");
        var config = new LlamaConfig
        {
            VocabSize = 260, HiddenSize = 16, IntermediateSize = 32, NumHiddenLayers = 1, NumAttentionHeads = 2, NumKeyValueHeads = 2, HeadDim = 8,
            MaxPositionEmbeddings = 64, RmsNormEps = 1e-5, RopeTheta = 10000,
        };
        using (var llama = new LlamaForCausalLM(config)) llama.SaveConfigAndWeights(model);
        File.WriteAllText(Path.Combine(model, ByteTokenizer.FileName), new ByteTokenizer(ByteTokenizerEncoding.Utf8, eosId: 10, padId: 0).ToJson());
        var ml = new MLContext(seed: 1);
        var data = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 4).Select(i => new Pair { Prompt = $"q{i}", Response = $"a{i}" }));
        using var fitted = ml.Bone.CausalLM(new BoneCausalLMOptions { ModelPath = model, Rank = 4, MaxEpochs = 1, BatchSize = 4, MaxSequenceLength = 32, MaxNewTokens = 2 }).Fit(data);
        string zip = Path.Combine(directory, "model.zip");
        ml.Bone.SaveModel(fitted, data.Schema, zip);
        return zip;
    }

    /// <summary>The same zip with every entry stored (no compression).</summary>
    public static byte[] Stored(byte[] zip)
    {
        using var output = new MemoryStream();
        using (var source = new ZipArchive(new MemoryStream(zip), ZipArchiveMode.Read))
        using (var target = new ZipArchive(output, ZipArchiveMode.Create, leaveOpen: true))
            foreach (ZipArchiveEntry entry in source.Entries)
            {
                using Stream from = entry.Open(), to = target.CreateEntry(entry.FullName, CompressionLevel.NoCompression).Open();
                from.CopyTo(to);
            }
        return output.ToArray();
    }

    public static void LoadAndGenerate(string path)
    {
        var ml = new MLContext(seed: 1);
        ITransformer loaded = ml.Bone.LoadModel(path, out _);
        try
        {
            if (loaded is BoneCausalLMTransformer lm) _ = lm.Complete(["q1"]);
        }
        finally { (loaded as IDisposable)?.Dispose(); }
    }
}
