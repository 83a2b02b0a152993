using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Nn;
using Microsoft.Win32.SafeHandles;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Models.Llama;

/// <summary>
/// Imports llama2.c's legacy <c>.bin</c> checkpoints (a 7×int32 header, then float32 arrays) into
/// <see cref="LlamaForCausalLM"/>. Query and key rows are reordered from Meta's interleaved-pair rotary layout to
/// Hugging Face's rotate-half layout, so the same module serves both.
/// </summary>
public static class Llama2cCheckpoint
{
    private const int VersionedMagic = 0x616b3432; // "ak42": newer llama2.c exports, a different layout

    /// <summary>True when <paramref name="path"/> is a <c>.bin</c> file whose header describes a llama2.c model of exactly its size.</summary>
    public static bool IsLlama2cFile(string path)
    {
        if (!path.EndsWith(".bin", StringComparison.OrdinalIgnoreCase) || !File.Exists(path)) return false;
        try { ReadHeader(path); return true; }
        catch (InvalidDataException) { return false; }
    }

    /// <summary>
    /// Reads <paramref name="path"/> into a model of <paramref name="options"/>' dtype and device; each array is read
    /// once into its parameter. Malformed files get an error naming the file and the problem.
    /// </summary>
    public static LlamaForCausalLM Load(string path, ModelLoadOptions? options = null)
    {
        options ??= ModelLoadOptions.Default;
        var (config, layout) = ReadHeader(path);
        var model = new LlamaForCausalLM(config, ParameterPlacement.ForLoading(options.DType ?? ScalarType.Float32, options.Device));
        try
        {
            using SafeFileHandle file = File.OpenHandle(IO.InputFile.Resolve(path), FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
            using var noGrad = no_grad();
            var parameters = model.state_dict();
            foreach (var (name, offset, shape, heads) in layout)
            {
                using var scope = NewDisposeScope();
                Tensor value = empty(shape, dtype: ScalarType.Float32);
                ReadFloats(file, path, offset, value, name, options.Fingerprint);
                if (heads > 0) value = ToRotateHalf(value, heads);
                Tensor target = parameters.TryGetValue(name, out Tensor? p) ? p : throw new InvalidDataException($"{path}: no parameter for '{name}'.");
                target.copy_(value);
            }
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return model;
    }

    /// <summary>Meta's interleaved pairs (2i, 2i+1) per head → transformers' halves (i, i + d/2).</summary>
    public static Tensor ToRotateHalf(Tensor weight, int heads)
    {
        long rows = weight.shape[0], columns = weight.shape[1];
        return weight.view(heads, rows / heads / 2, 2, columns).transpose(1, 2).reshape(rows, columns);
    }

    // The config and, for every parameter, where its float32 array starts in the file (rotary heads > 0 for q / k).
    private static (LlamaConfig, List<(string Name, long Offset, long[] Shape, int Heads)>) ReadHeader(string path)
    {
        // The size of the file itself, not of a link to it (a link's own size is the length of its target's name).
        long length = new FileInfo(IO.InputFile.Resolve(path)).Length;
        if (length < 28) throw new InvalidDataException($"{path}: {length} bytes is too short for the 28-byte llama2.c header.");
        var header = new int[7];
        using (var stream = IO.InputFile.OpenRead(path))
        using (var reader = new BinaryReader(stream))
            for (int i = 0; i < 7; i++) header[i] = reader.ReadInt32();
        if (header[0] == VersionedMagic) throw new InvalidDataException($"{path}: this is a versioned llama2.c export (magic \"ak42\"); only the legacy format is supported.");
        var (dim, hidden, layers, heads, kvHeads, vocab, seqLen) = (header[0], header[1], header[2], header[3], header[4], header[5], header[6]);
        bool shared = vocab > 0;
        vocab = vocab == int.MinValue ? 0 : Math.Abs(vocab);
        if (dim is <= 0 or > ConfigLimits.Width || hidden is <= 0 or > ConfigLimits.IntermediateWidth || layers is <= 0 or > ConfigLimits.Layers
            || heads is <= 0 or > ConfigLimits.Heads || kvHeads <= 0 || vocab is 0 or > ConfigLimits.Vocabulary || seqLen is <= 0 or > ConfigLimits.Positions
            || dim % heads != 0 || heads % kvHeads != 0 || dim / heads % 2 != 0)
            throw new InvalidDataException($"{path}: the header [{string.Join(", ", header)}] does not describe a llama2.c model.");
        int headDim = dim / heads, kv = kvHeads * headDim;
        long expected = (long)vocab * dim + layers * (2L * dim + (long)dim * dim * 2 + 2L * kv * dim + 3L * hidden * dim) + dim + 2L * seqLen * headDim / 2 + (shared ? 0 : (long)vocab * dim);
        if (length != 28 + 4 * expected)
            throw new InvalidDataException($"{path}: {length} bytes, but the header describes {28 + 4 * expected} bytes.");

        var config = new LlamaConfig
        {
            VocabSize = vocab, HiddenSize = dim, IntermediateSize = hidden, NumHiddenLayers = layers, NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads, HeadDim = headDim, MaxPositionEmbeddings = seqLen, RmsNormEps = 1e-5, RopeTheta = 10000,
            TieWordEmbeddings = shared, BosTokenId = 1, EosTokenIds = [2],
        };
        var layout = new List<(string, long, long[], int)>();
        long offset = 28;
        void Next(string name, long[] shape, int rotaryHeads = 0)
        {
            layout.Add((name, offset, shape, rotaryHeads));
            offset += 4 * shape.Aggregate(1L, (a, b) => a * b);
        }
        void Stacked(string name, long[] shape, int rotaryHeads = 0)
        {
            for (int l = 0; l < layers; l++) Next($"model.layers.{l}.{name}", shape, rotaryHeads);
        }
        Next("model.embed_tokens.weight", [vocab, dim]);
        Stacked("input_layernorm.weight", [dim]);
        Stacked("self_attn.q_proj.weight", [dim, dim], heads);
        Stacked("self_attn.k_proj.weight", [kv, dim], kvHeads);
        Stacked("self_attn.v_proj.weight", [kv, dim]);
        Stacked("self_attn.o_proj.weight", [dim, dim]);
        Stacked("post_attention_layernorm.weight", [dim]);
        Stacked("mlp.gate_proj.weight", [hidden, dim]);
        Stacked("mlp.down_proj.weight", [dim, hidden]);
        Stacked("mlp.up_proj.weight", [hidden, dim]);
        Next("model.norm.weight", [dim]);
        offset += 4L * 2 * seqLen * headDim / 2; // legacy RoPE tables, recomputed instead
        if (!shared) Next("lm_head.weight", [vocab, dim]);
        return (config, layout);
    }

    private static unsafe void ReadFloats(SafeFileHandle file, string path, long offset, Tensor destination, string name, WeightFingerprint? fingerprint)
    {
        long bytes = destination.numel() * 4;
        byte* pointer = TensorMemory.Pointer(destination);
        for (long done = 0; done < bytes;)
        {
            int read = RandomAccess.Read(file, new Span<byte>(pointer + done, (int)Math.Min(1 << 30, bytes - done)), offset + done);
            if (read == 0) throw new InvalidDataException($"{path}: the file ended inside '{name}'.");
            done += read;
        }
        fingerprint?.AddMemory(Path.GetFileName(path), name, (IntPtr)pointer, bytes);
    }
}
