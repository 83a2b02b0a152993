using System.Text.Json;
using System.Text.Json.Nodes;

namespace Microsoft.ML.Bone.Models.Llama;

/// <summary>RoPE frequency scaling (<c>rope_scaling</c> / <c>rope_parameters</c>).</summary>
public sealed record RopeScaling(string Type, double Factor, double LowFreqFactor = 1, double HighFreqFactor = 4, int OriginalMaxPositionEmbeddings = 8192);

/// <summary>LLaMA hyper-parameters from a Hugging Face <c>config.json</c> (LLaMA-1/2/3 and llama2.c imports).</summary>
public sealed record LlamaConfig
{
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
    /// <summary>Bias on q/k/v/o.</summary>
    public bool AttentionBias { get; init; }
    /// <summary>Bias on gate/up/down.</summary>
    public bool MlpBias { get; init; }
    /// <summary>Beginning-of-sequence id.</summary>
    public int BosTokenId { get; init; } = 1;
    /// <summary>End-of-sequence ids (LLaMA-3 instruct lists several).</summary>
    public IReadOnlyList<int> EosTokenIds { get; init; } = [2];

    /// <summary>Modules the Bone paper adapts in LLaMA.</summary>
    public static readonly IReadOnlyList<string> AllProjections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    /// <summary>Reads a config; unsupported settings are errors naming the file and field.</summary>
    public static LlamaConfig FromHf(HfConfig c)
    {
        string act = c.String("hidden_act", "silu");
        if (act != "silu") throw c.Error("hidden_act", $"is \"{act}\"; LLaMA uses \"silu\"");
        int hidden = c.Int("hidden_size", 4096), heads = c.Int("num_attention_heads", 32);
        JsonObject? parameters = c.Json["rope_parameters"] as JsonObject;
        double theta = parameters?["rope_theta"]?.GetValue<double>() ?? c.Double("rope_theta", 10000);
        var config = new LlamaConfig
        {
            VocabSize = c.Int("vocab_size", 32000),
            HiddenSize = hidden,
            IntermediateSize = c.Int("intermediate_size", 11008),
            NumHiddenLayers = c.Int("num_hidden_layers", 32),
            NumAttentionHeads = heads,
            NumKeyValueHeads = c.Has("num_key_value_heads") ? c.Int("num_key_value_heads") : heads,
            HeadDim = c.Has("head_dim") ? c.Int("head_dim") : hidden / heads,
            MaxPositionEmbeddings = c.Int("max_position_embeddings", 2048),
            RmsNormEps = c.Double("rms_norm_eps", 1e-6),
            RopeTheta = theta,
            RopeScaling = ReadScaling(c, parameters ?? c.Json["rope_scaling"] as JsonObject),
            TieWordEmbeddings = c.Bool("tie_word_embeddings", false),
            AttentionBias = c.Bool("attention_bias", false),
            MlpBias = c.Bool("mlp_bias", false),
            BosTokenId = c.Has("bos_token_id") ? c.Int("bos_token_id") : 1,
            EosTokenIds = c.Json["eos_token_id"] switch
            {
                JsonArray a => a.Select(n => n!.GetValue<int>()).ToArray(),
                null => [2],
                _ => [c.Int("eos_token_id")],
            },
        };
        if (config.NumAttentionHeads % config.NumKeyValueHeads != 0)
            throw c.Error("num_key_value_heads", $"({config.NumKeyValueHeads}) must divide num_attention_heads ({config.NumAttentionHeads})");
        if (config.HeadDim % 2 != 0) throw c.Error("head_dim", $"({config.HeadDim}) must be even for rotary embeddings");
        return config;
    }

    /// <summary>Loads <c>config.json</c> from a model directory.</summary>
    public static LlamaConfig Load(string directory) => FromHf(HfConfig.Load(directory));

    private static RopeScaling? ReadScaling(HfConfig c, JsonObject? o)
    {
        if (o is null) return null;
        string type = (o["rope_type"] ?? o["type"])?.GetValue<string>() ?? "default";
        double Get(string name, double fallback) => o[name]?.GetValue<double>() ?? fallback;
        return type switch
        {
            "default" => null,
            "linear" or "dynamic" => new RopeScaling(type, Get("factor", 1)),
            "llama3" => new RopeScaling(type, Get("factor", 8), Get("low_freq_factor", 1), Get("high_freq_factor", 4), (int)Get("original_max_position_embeddings", 8192)),
            _ => throw c.Error("rope_scaling", $"has rope_type \"{type}\"; supported: default, linear, dynamic, llama3"),
        };
    }

    /// <summary>The config in Hugging Face's format.</summary>
    public string ToJson()
    {
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
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
            ["attention_bias"] = AttentionBias,
            ["mlp_bias"] = MlpBias,
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenIds.Count == 1 ? JsonValue.Create(EosTokenIds[0]) : new JsonArray(EosTokenIds.Select(i => (JsonNode?)i).ToArray()),
        };
        if (RopeScaling is { } s)
            o["rope_scaling"] = s.Type == "llama3"
                ? new JsonObject { ["rope_type"] = "llama3", ["factor"] = s.Factor, ["low_freq_factor"] = s.LowFreqFactor, ["high_freq_factor"] = s.HighFreqFactor, ["original_max_position_embeddings"] = s.OriginalMaxPositionEmbeddings }
                : new JsonObject { ["rope_type"] = s.Type, ["factor"] = s.Factor };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }
}
