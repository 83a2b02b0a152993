using System.Text.Json;
using System.Text.Json.Nodes;

namespace Microsoft.ML.Bone.Models.Rwkv6;

/// <summary>
/// Hyper-parameters of RWKV-6 ("Finch", x060). BlinkDL <c>.pth</c> and rwkv.cpp files carry no config: everything is
/// read from tensor shapes (<see cref="FromShapes"/>), as ChatRWKV and rwkv.cpp do; Hugging Face directories have a
/// <c>config.json</c> (<c>model_type: rwkv6</c>) and the LoRA widths still come from shapes.
/// </summary>
public sealed record Rwkv6Config
{
    /// <summary>config.json's <c>model_type</c>.</summary>
    public const string ModelType = "rwkv6";

    /// <summary>Vocabulary size (65536 for the World models, 256 for byte-level ones).</summary>
    public int VocabSize { get; init; } = 65536;
    /// <summary>Residual width C (<c>n_embd</c>).</summary>
    public int HiddenSize { get; init; } = 2048;
    /// <summary>Blocks (<c>n_layer</c>).</summary>
    public int NumHiddenLayers { get; init; } = 24;
    /// <summary>Time-mix width A (<c>dim_att</c>; C in every released model).</summary>
    public int AttentionHiddenSize { get; init; } = 2048;
    /// <summary>Per-head width N (64 in released models).</summary>
    public int HeadSize { get; init; } = 64;
    /// <summary>Channel-mix width F (<c>dim_ffn</c>).</summary>
    public int IntermediateSize { get; init; } = 7168;
    /// <summary>Width of the 5-way token-shift LoRA (<c>time_maa_w1</c> is C × 5·it).</summary>
    public int TimeMixExtraDim { get; init; } = 32;
    /// <summary>Width of the decay LoRA (<c>time_decay_w1</c> is C × it).</summary>
    public int TimeDecayExtraDim { get; init; } = 64;
    /// <summary>LayerNorm epsilon.</summary>
    public double LayerNormEpsilon { get; init; } = 1e-5;
    /// <summary>The training-time divisor of the WKV output; ln_x's GroupNorm epsilon is 1e-5 · divisor².</summary>
    public int HeadSizeDivisor { get; init; } = 8;
    /// <summary>
    /// End-of-text id: the World tokenizer's 0 (also the document separator and pad). Null for byte-level models
    /// without a config (vocabulary ≤ 256), where 0 is an ordinary byte and the tokenizer's file says what ends a text.
    /// </summary>
    public int? EosTokenId { get; init; }
    /// <summary>Context length the model was trained for (RWKV has no positions: information only, and the length checks).</summary>
    public int ContextLength { get; init; } = 4096;

    /// <summary>Heads H = A / N.</summary>
    public int NumHeads => AttentionHiddenSize / HeadSize;

    /// <summary>ln_x's epsilon (64e-5 for the usual divisor 8).</summary>
    public double GroupNormEpsilon => 1e-5 * HeadSizeDivisor * HeadSizeDivisor;

    /// <summary>The eight linear layers of a block, as RWKV-PEFT and the Bone paper adapt them (Hugging Face names).</summary>
    public static readonly IReadOnlyList<string> AllLinears =
        ["attention.receptance", "attention.key", "attention.value", "attention.gate", "attention.output", "feed_forward.key", "feed_forward.receptance", "feed_forward.value"];

    /// <summary>
    /// The config of a checkpoint from its tensor shapes, by BlinkDL names (<c>emb.weight</c>, <c>blocks.0.att.time_faaaa</c>,
    /// …); <paramref name="shapeOf"/> gives a tensor's shape or null when absent. Errors name <paramref name="source"/>.
    /// </summary>
    public static Rwkv6Config FromShapes(Func<string, long[]?> shapeOf, string source, int? layers = null)
    {
        long[] Shape(string name, int rank) =>
            shapeOf(name) is { } s && s.Length == rank ? s
            : throw new InvalidDataException($"{source}: '{name}' is {(shapeOf(name) is { } bad ? $"[{string.Join(", ", bad)}]" : "missing")}; an RWKV-6 (x060) checkpoint has it with {rank} dimensions.");
        long[] emb = Shape("emb.weight", 2);
        int n = layers ?? CountLayers(shapeOf);
        if (n == 0) throw new InvalidDataException($"{source}: no 'blocks.0.' tensors; this is not an RWKV checkpoint.");
        if (shapeOf("blocks.0.att.time_maa_x") is null)
            throw new InvalidDataException($"{source}: 'blocks.0.att.time_maa_x' is missing; this is not RWKV-6 (x060){(shapeOf("blocks.0.att.time_mix_k") is not null ? " but an older RWKV (v4/v5)" : shapeOf("blocks.0.att.w0") is not null ? " but RWKV-7" : "")}.");
        long[] faaaa = shapeOf("blocks.0.att.time_faaaa") ?? throw new InvalidDataException($"{source}: 'blocks.0.att.time_faaaa' is missing.");
        long heads = faaaa[0], size = faaaa.Length > 1 ? faaaa[1] : 1;
        long[] key = Shape("blocks.0.att.key.weight", 2), ffnKey = Shape("blocks.0.ffn.key.weight", 2);
        long[] maaW1 = Shape("blocks.0.att.time_maa_w1", 2), decayW1 = Shape("blocks.0.att.time_decay_w1", 2);
        var config = new Rwkv6Config
        {
            VocabSize = Checked(emb[0], ConfigLimits.Vocabulary, "vocabulary", source),
            HiddenSize = Checked(emb[1], ConfigLimits.Width, "n_embd", source),
            NumHiddenLayers = Checked(n, ConfigLimits.Layers, "n_layer", source),
            AttentionHiddenSize = Checked(key[0], ConfigLimits.Width, "dim_att", source),
            HeadSize = Checked(size, ConfigLimits.Width, "head size", source),
            IntermediateSize = Checked(ffnKey[0], ConfigLimits.IntermediateWidth, "dim_ffn", source),
            TimeMixExtraDim = Checked(maaW1[1] / 5, ConfigLimits.Width, "time_maa_w1 width / 5", source),
            TimeDecayExtraDim = Checked(decayW1[1], ConfigLimits.Width, "time_decay_w1 width", source),
        };
        config = config with { EosTokenId = config.VocabSize > 256 ? 0 : null };
        if (heads * size != config.AttentionHiddenSize || maaW1[1] % 5 != 0)
            throw new InvalidDataException($"{source}: time_faaaa [{string.Join(", ", faaaa)}] and key [{string.Join(", ", key)}] (or time_maa_w1's width {maaW1[1]}, not a multiple of 5) do not describe RWKV-6 heads.");
        return config;
    }

    /// <summary>1 + the largest block index among the names.</summary>
    public static int CountLayers(Func<string, long[]?> shapeOf)
    {
        int n = 0;
        while (n <= ConfigLimits.Layers && shapeOf($"blocks.{n}.ln1.weight") is not null) n++;
        return n;
    }

    /// <summary>Reads a Hugging Face RWKV6 <c>config.json</c>; the LoRA widths come from <paramref name="shapeOf"/> (BlinkDL names).</summary>
    public static Rwkv6Config FromHf(HfConfig c, Func<string, long[]?> shapeOf, string checkpoint)
    {
        string modelType = c.String("model_type", ModelType);
        if (modelType != ModelType) throw c.Error("model_type", $"is \"{modelType}\", not \"{ModelType}\"");
        int hidden = c.Int("hidden_size", null, 1, ConfigLimits.Width);
        Rwkv6Config shapes = FromShapes(shapeOf, checkpoint, c.Int("num_hidden_layers", null, 1, ConfigLimits.Layers));
        int attention = c.Json["attention_hidden_size"] is null ? hidden : c.Int("attention_hidden_size", null, 1, ConfigLimits.Width);
        int headSize = c.Int("head_size", 64, 1, ConfigLimits.Width);
        int ffn = c.Json["intermediate_size"] is null ? (int)(3.5 * hidden) / 32 * 32 : c.Int("intermediate_size", null, 1, ConfigLimits.IntermediateWidth);
        var config = shapes with
        {
            VocabSize = c.Int("vocab_size", null, 1, ConfigLimits.Vocabulary),
            HiddenSize = hidden,
            AttentionHiddenSize = attention,
            HeadSize = headSize,
            IntermediateSize = ffn,
            LayerNormEpsilon = c.Double("layer_norm_epsilon", 1e-5, 0, 1),
            HeadSizeDivisor = c.Json["head_size_divisor"] is null ? 8 : c.Int("head_size_divisor", null, 1, 1 << 16),
            EosTokenId = c.Json["eos_token_id"] is null ? shapes.EosTokenId : c.Int("eos_token_id", null, 0, ConfigLimits.Vocabulary),
            ContextLength = c.Json["context_length"] is null ? 4096 : c.Int("context_length", null, 1, ConfigLimits.Positions),
        };
        if (c.Json["tie_word_embeddings"] is JsonValue tie && tie.TryGetValue(out bool tied) && tied) throw c.Error("tie_word_embeddings", "is true; RWKV-6 has a separate head");
        if (attention % headSize != 0) throw c.Error("head_size", $"is {headSize}, which does not divide attention_hidden_size {attention}");
        if (config != shapes with { LayerNormEpsilon = config.LayerNormEpsilon, HeadSizeDivisor = config.HeadSizeDivisor, EosTokenId = config.EosTokenId, ContextLength = config.ContextLength })
            throw new InvalidDataException($"{c.Source}: the sizes it gives (vocab {config.VocabSize}, width {config.HiddenSize}, attention {config.AttentionHiddenSize}, head size {config.HeadSize}, ffn {config.IntermediateSize}) differ from those of the tensors in {checkpoint} (vocab {shapes.VocabSize}, width {shapes.HiddenSize}, attention {shapes.AttentionHiddenSize}, head size {shapes.HeadSize}, ffn {shapes.IntermediateSize}).");
        return config;
    }

    /// <summary>The config in the Hugging Face RWKV6 layout (what <c>Rwkv6ForCausalLM</c>'s remote code reads).</summary>
    public string ToJson()
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("Rwkv6ForCausalLM"),
            ["model_type"] = ModelType,
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["attention_hidden_size"] = AttentionHiddenSize,
            ["head_size"] = HeadSize,
            ["head_size_divisor"] = HeadSizeDivisor,
            ["intermediate_size"] = IntermediateSize,
            ["layer_norm_epsilon"] = LayerNormEpsilon,
            ["rescale_every"] = 0,
            ["bos_token_id"] = EosTokenId,
            ["eos_token_id"] = EosTokenId,
            ["context_length"] = ContextLength,
            ["tie_word_embeddings"] = false,
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static int Checked(long value, long max, string what, string source) =>
        value is > 0 && value <= max ? (int)value : throw new InvalidDataException($"{source}: {what} {value} is out of range (1 to {max}).");
}
