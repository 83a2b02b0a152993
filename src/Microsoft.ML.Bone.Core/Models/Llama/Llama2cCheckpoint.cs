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

    /// <summary>Reads <paramref name="path"/>; malformed files get an error naming the file and the problem.</summary>
    public static LlamaForCausalLM Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found.", path);
        using var stream = File.OpenRead(path);
        using var reader = new BinaryReader(stream);
        if (stream.Length < 28) throw new InvalidDataException($"{path}: {stream.Length} bytes is too short for the 28-byte llama2.c header.");
        int[] header = Enumerable.Range(0, 7).Select(_ => reader.ReadInt32()).ToArray();
        if (header[0] == VersionedMagic) throw new InvalidDataException($"{path}: this is a versioned llama2.c export (magic \"ak42\"); only the legacy format is supported.");
        var (dim, hidden, layers, heads, kvHeads, vocab, seqLen) = (header[0], header[1], header[2], header[3], header[4], header[5], header[6]);
        bool shared = vocab > 0;
        vocab = Math.Abs(vocab);
        if (dim <= 0 || hidden <= 0 || layers <= 0 || heads <= 0 || kvHeads <= 0 || vocab == 0 || seqLen <= 0 || dim % heads != 0 || heads % kvHeads != 0)
            throw new InvalidDataException($"{path}: the header [{string.Join(", ", header)}] does not describe a llama2.c model.");
        int headDim = dim / heads, kv = kvHeads * headDim;
        long expected = (long)vocab * dim + layers * (2L * dim + (long)dim * dim * 2 + 2L * kv * dim + 3L * hidden * dim) + dim + 2L * seqLen * headDim / 2 + (shared ? 0 : (long)vocab * dim);
        if (stream.Length != 28 + 4 * expected)
            throw new InvalidDataException($"{path}: {stream.Length} bytes, but the header describes {28 + 4 * expected} bytes.");

        var config = new LlamaConfig
        {
            VocabSize = vocab, HiddenSize = dim, IntermediateSize = hidden, NumHiddenLayers = layers, NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads, HeadDim = headDim, MaxPositionEmbeddings = seqLen, RmsNormEps = 1e-5, RopeTheta = 10000,
            TieWordEmbeddings = shared, BosTokenId = 1, EosTokenIds = [2],
        };
        // The model's parameters must outlive the dispose scope that collects the file's temporary tensors.
        var model = new LlamaForCausalLM(config);
        using var scope = NewDisposeScope();
        Tensor Read(params long[] shape)
        {
            long count = shape.Aggregate(1L, (a, b) => a * b);
            var data = new float[count];
            var bytes = reader.ReadBytes(checked((int)(count * 4)));
            Buffer.BlockCopy(bytes, 0, data, 0, bytes.Length);
            return tensor(data, shape);
        }
        var state = new Dictionary<string, Tensor> { ["model.embed_tokens.weight"] = Read(vocab, dim) };
        void Stack(string name, Tensor stacked, Func<Tensor, Tensor>? convert = null)
        {
            for (int l = 0; l < layers; l++) state[$"model.layers.{l}.{name}"] = convert is null ? stacked[l] : convert(stacked[l]);
        }
        Stack("input_layernorm.weight", Read(layers, dim));
        Stack("self_attn.q_proj.weight", Read(layers, dim, dim), w => ToRotateHalf(w, heads));
        Stack("self_attn.k_proj.weight", Read(layers, kv, dim), w => ToRotateHalf(w, kvHeads));
        Stack("self_attn.v_proj.weight", Read(layers, kv, dim));
        Stack("self_attn.o_proj.weight", Read(layers, dim, dim));
        Stack("post_attention_layernorm.weight", Read(layers, dim));
        Stack("mlp.gate_proj.weight", Read(layers, hidden, dim));
        Stack("mlp.down_proj.weight", Read(layers, dim, hidden));
        Stack("mlp.up_proj.weight", Read(layers, hidden, dim));
        state["model.norm.weight"] = Read(dim);
        reader.ReadBytes(2 * seqLen * headDim / 2 * 4); // legacy RoPE tables, recomputed instead
        if (!shared) state["lm_head.weight"] = Read(vocab, dim);

        using (no_grad())
            foreach (var (name, p) in model.state_dict())
                p.copy_(state.TryGetValue(name, out Tensor? value) ? value : throw new InvalidDataException($"{path}: no tensor for '{name}'."));
        model.eval();
        return model;
    }

    /// <summary>Meta's interleaved pairs (2i, 2i+1) per head → transformers' halves (i, i + d/2).</summary>
    public static Tensor ToRotateHalf(Tensor weight, int heads)
    {
        long rows = weight.shape[0], columns = weight.shape[1];
        return weight.view(heads, rows / heads / 2, 2, columns).transpose(1, 2).reshape(rows, columns);
    }
}
