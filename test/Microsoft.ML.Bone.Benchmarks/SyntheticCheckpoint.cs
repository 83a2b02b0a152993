using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Models.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Benchmarks;

/// <summary>A LLaMA-shaped checkpoint with random bf16 weights, written shard by shard so the writer never holds the whole model.</summary>
internal static class SyntheticCheckpoint
{
    public static LlamaConfig Shape(string name) => name switch
    {
        "tinyllama" => new LlamaConfig
        {
            VocabSize = 32000, HiddenSize = 2048, IntermediateSize = 5632, NumHiddenLayers = 22, NumAttentionHeads = 32, NumKeyValueHeads = 4, HeadDim = 64,
            MaxPositionEmbeddings = 2048, RmsNormEps = 1e-5, RopeTheta = 10000,
        },
        "llama2-7b" => new LlamaConfig
        {
            VocabSize = 32000, HiddenSize = 4096, IntermediateSize = 11008, NumHiddenLayers = 32, NumAttentionHeads = 32, NumKeyValueHeads = 32, HeadDim = 128,
            MaxPositionEmbeddings = 4096, RmsNormEps = 1e-5, RopeTheta = 10000,
        },
        _ => throw new ArgumentException($"--shape: unknown shape '{name}' (tinyllama, llama2-7b)."),
    };

    /// <summary>Writes config.json and shards of at most <paramref name="shardBytes"/> (plus the index) to <paramref name="directory"/>.</summary>
    public static long Write(string directory, LlamaConfig config, long shardBytes = 2L << 30)
    {
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "config.json"), config.ToJson());
        // The names and shapes come from the model itself, built on the meta device (no memory).
        List<(string Name, long[] Shape)> tensors;
        using (var shapes = new LlamaForCausalLM(config, Nn.ParameterPlacement.ShapesOnly(ScalarType.BFloat16)))
            tensors = shapes.state_dict().Select(p => (p.Key, p.Value.shape)).ToList();
        var generator = new Generator(42);
        var groups = new List<List<(string, long[])>> { new() };
        long size = 0, total = 0;
        foreach (var t in tensors)
        {
            long bytes = 2 * t.Shape.Aggregate(1L, (a, b) => a * b);
            if (size + bytes > shardBytes && groups[^1].Count > 0) { groups.Add([]); size = 0; }
            groups[^1].Add(t);
            size += bytes;
            total += bytes;
        }
        var weightMap = new Dictionary<string, string>();
        for (int s = 0; s < groups.Count; s++)
        {
            string shard = $"model-{s + 1:00000}-of-{groups.Count:00000}.safetensors";
            using var scope = NewDisposeScope();
            // Each tensor's float32 draw is freed as soon as its bf16 copy exists: the writer holds one shard, not three.
            var part = groups[s].Select(t =>
            {
                using var draw = NewDisposeScope();
                Tensor value = (t.Item1.EndsWith("norm.weight", StringComparison.Ordinal) ? ones(t.Item2) : randn(t.Item2, generator: generator).mul_(0.02)).to(ScalarType.BFloat16);
                return new KeyValuePair<string, Tensor>(t.Item1, value.MoveToOuterDisposeScope());
            }).ToList();
            SafetensorsWriter.Write(Path.Combine(directory, shard), part, new Dictionary<string, string> { ["format"] = "pt" });
            foreach (var (name, _) in part) weightMap[name] = shard;
        }
        SafetensorsCheckpoint.WriteIndex(Path.Combine(directory, SafetensorsCheckpoint.IndexFileName), weightMap, total);
        return total;
    }
}
