using System.Text.Json;
using System.Text.Json.Nodes;

namespace Microsoft.ML.Bone.Models.Llama;

/// <summary>RoPE frequency scaling (<c>rope_scaling</c> / <c>rope_parameters</c>).</summary>
public sealed record RopeScaling(string Type, double Factor, double LowFreqFactor = 1, double HighFreqFactor = 4, int OriginalMaxPositionEmbeddings = 8192);

/// <summary>
/// Hyper-parameters of the LLaMA family from a Hugging Face <c>config.json</c>: LLaMA-1/2/3 (<c>llama</c>),
/// Mistral (<c>mistral</c>: sliding-window attention) and Qwen2 (<c>qwen2</c>: bias on q/k/v, optional sliding window
/// on the upper layers), plus llama2.c imports. They share one module; the differences are these fields.
/// </summary>
public sealed record LlamaConfig
{
    /// <summary>config.json's <c>model_type</c>: <c>llama</c>, <c>mistral</c> or <c>qwen2</c>.</summary>
    public string ModelType { get; init; } = "llama";
    /// <summary>Vocabulary size.</summary>
    public int VocabSize { get; init; } = 32000;
    /// <summary>Residual width.</summary>
    public int HiddenSize { get; init; } = 4096;
    /// <summary>MLP width.</summary>
    public int IntermediateSize { get; init; } = 11008;
    /// <summary>Decoder layers.</summary>
    public int NumHiddenLayers { get; init; } = 32;
    /// <summary>Query heads.</summary>
    public int NumAttentionHeads { get; init; } = 32;
    /// <summary>Key/value heads (grouped-query attention when fewer than query heads).</summary>
    public int NumKeyValueHeads { get; init; } = 32;
    /// <summary>Per-head width (hidden / heads unless given).</summary>
    public int HeadDim { get; init; } = 128;
    /// <summary>Context length the model was trained for.</summary>
    public int MaxPositionEmbeddings { get; init; } = 2048;
    /// <summary>RMSNorm epsilon.</summary>
    public double RmsNormEps { get; init; } = 1e-6;
    /// <summary>RoPE base.</summary>
    public double RopeTheta { get; init; } = 10000;
    /// <summary>RoPE scaling, or null.</summary>
    public RopeScaling? RopeScaling { get; init; }
    /// <summary>Whether the output projection reuses the token embeddings.</summary>
    public bool TieWordEmbeddings { get; init; }
    /// <summary>Bias on q/k/v (LLaMA <c>attention_bias</c>; always on in Qwen2).</summary>
    public bool QkvBias { get; init; }
    /// <summary>Bias on o_proj (LLaMA <c>attention_bias</c>; never in Qwen2).</summary>
    public bool OutputBias { get; init; }
    /// <summary>Bias on gate/up/down.</summary>
    public bool MlpBias { get; init; }
    /// <summary>Sliding-window width: a query sees at most this many keys (itself included); null = full causal attention.</summary>
    public int? SlidingWindow { get; init; }
    /// <summary>Layers that use <see cref="SlidingWindow"/> (Qwen2: from <c>max_window_layers</c> up); null = all layers.</summary>
    public IReadOnlyList<bool>? SlidingLayers { get; init; }
    /// <summary>Beginning-of-sequence id, or null when the model has none.</summary>
    public int? BosTokenId { get; init; } = 1;
    /// <summary>End-of-sequence ids (LLaMA-3 instruct lists several).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [2];

    /// <summary>The model types this config reads.</summary>
    public static readonly IReadOnlyList<string> ModelTypes = ["llama", "mistral", "qwen2"];

    /// <summary>Modules the Bone paper adapts in LLaMA.</summary>
    public static readonly IReadOnlyList<string> AllProjections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    /// <summary>The window of layer <paramref name="layer"/>, or null for full attention.</summary>
    public int? WindowOf(int layer) => SlidingWindow is { } w && (SlidingLayers is null || SlidingLayers[layer]) ? w : null;

    /// <summary>
    /// Reads a config of any of <see cref="ModelTypes"/>; sizes are bounds-checked and unsupported settings are
    /// errors naming the file and field, before anything is allocated.
    /// </summary>
    public static LlamaConfig FromHf(HfConfig c)
    {
        string modelType = c.String("model_type", "llama");
        if (!ModelTypes.Contains(modelType)) throw c.Error("model_type", $"is \"{modelType}\"; this reader supports {string.Join(", ", ModelTypes)}");
        string act = c.String("hidden_act", "silu");
        if (act != "silu") throw c.Error("hidden_act", $"is \"{act}\"; the LLaMA family uses \"silu\"");
        int hidden = c.Int("hidden_size", null, 1, ConfigLimits.Width);
        int heads = c.Int("num_attention_heads", null, 1, ConfigLimits.Heads);
        int layers = c.Int("num_hidden_layers", null, 1, ConfigLimits.Layers);
        int kvHeads = c.Has("num_key_value_heads") ? c.Int("num_key_value_heads", null, 1, ConfigLimits.Heads) : heads;
        int headDim = c.Has("head_dim") ? c.Int("head_dim", null, 2, ConfigLimits.Width) : hidden / heads;
        if (!c.Has("head_dim") && hidden % heads != 0) throw c.Error("num_attention_heads", $"({heads}) must divide hidden_size ({hidden}) when head_dim is not given");
        if (heads % kvHeads != 0) throw c.Error("num_key_value_heads", $"({kvHeads}) must divide num_attention_heads ({heads})");
        if (headDim % 2 != 0) throw c.Error("head_dim", $"({headDim}) must be even for rotary embeddings");

        HfConfig? parameters = c.Section("rope_parameters");   // transformers v5 moves rope_theta and the scaling here
        double theta = parameters is not null && parameters.Has("rope_theta") ? parameters.Double("rope_theta", null, 0, 1e12) : c.Double("rope_theta", 10000, 0, 1e12);
        bool attentionBias = c.Bool("attention_bias", false);
        int vocab = c.Int("vocab_size", null, 1, ConfigLimits.Vocabulary);
        int? window = ReadWindow(c, modelType);
        var config = new LlamaConfig
        {
            ModelType = modelType,
            VocabSize = vocab,
            HiddenSize = hidden,
            IntermediateSize = c.Int("intermediate_size", null, 1, ConfigLimits.IntermediateWidth),
            NumHiddenLayers = layers,
            NumAttentionHeads = heads,
            NumKeyValueHeads = kvHeads,
            HeadDim = headDim,
            MaxPositionEmbeddings = c.Int("max_position_embeddings", 2048, 1, ConfigLimits.Positions),
            RmsNormEps = c.Double("rms_norm_eps", 1e-6, 0, 1),
            RopeTheta = theta,
            RopeScaling = ReadScaling(parameters ?? c.Section("rope_scaling")),
            TieWordEmbeddings = c.Bool("tie_word_embeddings", false),
            QkvBias = modelType == "qwen2" || attentionBias,
            OutputBias = modelType != "qwen2" && attentionBias,
            MlpBias = c.Bool("mlp_bias", false),
            SlidingWindow = window,
            SlidingLayers = window is null ? null : ReadSlidingLayers(c, modelType, layers),
            BosTokenId = c.Has("bos_token_id") ? c.Int("bos_token_id", null, 0, vocab - 1) : modelType == "qwen2" ? null : 1,
            EosTokenIds = c.Has("eos_token_id") ? c.Ints("eos_token_id", vocab - 1) : [2],
        };
        return config;
    }

    /// <summary>Loads <c>config.json</c> from a model directory.</summary>
    public static LlamaConfig Load(string directory) => FromHf(HfConfig.Load(directory));

    private static int? ReadWindow(HfConfig c, string modelType)
    {
        if (modelType == "llama" || !c.Has("sliding_window")) return null;
        if (modelType == "qwen2" && !c.Bool("use_sliding_window", false)) return null;
        return c.Int("sliding_window", null, 1, ConfigLimits.Positions);
    }

    // Qwen2 slides on layers ≥ max_window_layers unless layer_types lists each layer; Mistral slides everywhere.
    private static IReadOnlyList<bool>? ReadSlidingLayers(HfConfig c, string modelType, int layers)
    {
        if (c.Json["layer_types"] is JsonArray types)
        {
            if (types.Count != layers) throw c.Error("layer_types", $"has {types.Count} entries for {layers} layers");
            return types.Select(t => (t as JsonValue)?.TryGetValue(out string? s) == true ? s switch
            {
                "sliding_attention" => true,
                "full_attention" => false,
                _ => throw c.Error("layer_types", $"has \"{s}\"; expected \"full_attention\" or \"sliding_attention\""),
            } : throw c.Error("layer_types", "must be a list of strings")).ToArray();
        }
        if (modelType != "qwen2") return null;
        int first = c.Int("max_window_layers", 28, 0, ConfigLimits.Layers);
        return Enumerable.Range(0, layers).Select(i => i >= first).ToArray();
    }

    private static RopeScaling? ReadScaling(HfConfig? o)
    {
        if (o is null) return null;
        string type = o.Has("rope_type") ? o.String("rope_type") : o.String("type", "default");
        return type switch
        {
            "default" => null,
            "linear" or "dynamic" => new RopeScaling(type, o.Double("factor", null, 0, 1e6)),
            "llama3" => new RopeScaling(type, o.Double("factor", 8, 0, 1e6), o.Double("low_freq_factor", 1, 0, 1e6), o.Double("high_freq_factor", 4, 0, 1e6),
                o.Int("original_max_position_embeddings", 8192, 1, ConfigLimits.Positions)),
            _ => throw o.Error("rope_type", $"is \"{type}\"; supported: default, linear, dynamic, llama3"),
        };
    }

    /// <summary>The config in Hugging Face's format (the architecture of <see cref="ModelType"/>).</summary>
    public string ToJson()
    {
        string architecture = ModelType switch { "mistral" => "MistralForCausalLM", "qwen2" => "Qwen2ForCausalLM", _ => "LlamaForCausalLM" };
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray(architecture),
            ["model_type"] = ModelType,
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["head_dim"] = HeadDim,
            ["hidden_act"] = "silu",
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["mlp_bias"] = MlpBias,
            ["eos_token_id"] = EosTokenIds.Count == 1 ? JsonValue.Create(EosTokenIds[0]) : new JsonArray(EosTokenIds.Select(i => (JsonNode?)i).ToArray()),
        };
        if (BosTokenId is { } bos) o["bos_token_id"] = bos;
        if (ModelType != "qwen2") o["attention_bias"] = QkvBias;
        else if (QkvBias != true || OutputBias) throw new InvalidOperationException("Qwen2 always has q/k/v biases and no o_proj bias.");
        if (ModelType != "qwen2" && QkvBias != OutputBias) throw new InvalidOperationException($"{ModelType} has one attention_bias for q/k/v/o; QkvBias and OutputBias must agree.");
        if (SlidingWindow is { } window)
        {
            o["sliding_window"] = window;
            if (ModelType == "qwen2")
            {
                o["use_sliding_window"] = true;
                o["layer_types"] = new JsonArray(Enumerable.Range(0, NumHiddenLayers).Select(i => (JsonNode?)(WindowOf(i) is null ? "full_attention" : "sliding_attention")).ToArray());
            }
            else if (SlidingLayers is not null && SlidingLayers.Any(s => !s))
                throw new InvalidOperationException($"{ModelType} applies its sliding window to every layer.");
        }
        else if (ModelType != "llama") o["sliding_window"] = null;
        if (RopeScaling is { } s)
            o["rope_scaling"] = s.Type == "llama3"
                ? new JsonObject { ["rope_type"] = "llama3", ["factor"] = s.Factor, ["low_freq_factor"] = s.LowFreqFactor, ["high_freq_factor"] = s.HighFreqFactor, ["original_max_position_embeddings"] = s.OriginalMaxPositionEmbeddings }
                : new JsonObject { ["rope_type"] = s.Type, ["factor"] = s.Factor };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
