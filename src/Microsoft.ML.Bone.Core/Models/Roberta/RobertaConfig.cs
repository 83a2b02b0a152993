using System.Text.Json;
using System.Text.Json.Nodes;

namespace Microsoft.ML.Bone.Models.Roberta;

/// <summary>
/// RoBERTa hyper-parameters from a Hugging Face <c>config.json</c>. Defaults are the class defaults of transformers'
/// <c>RobertaConfig</c>; real checkpoints override several (roberta-base: 514 positions, layer_norm_eps 1e-5, one token type).
/// </summary>
public sealed record RobertaConfig
{
    /// <summary>Vocabulary size.</summary>
    public int VocabSize { get; init; } = 50265;
    /// <summary>Hidden size.</summary>
    public int HiddenSize { get; init; } = 768;
    /// <summary>Encoder layers.</summary>
    public int NumHiddenLayers { get; init; } = 12;
    /// <summary>Attention heads.</summary>
    public int NumAttentionHeads { get; init; } = 12;
    /// <summary>MLP size.</summary>
    public int IntermediateSize { get; init; } = 3072;
    /// <summary>Dropout after embeddings, attention output and MLP.</summary>
    public double HiddenDropoutProb { get; init; } = 0.1;
    /// <summary>Dropout on attention probabilities.</summary>
    public double AttentionProbsDropoutProb { get; init; } = 0.1;
    /// <summary>Position table size (512 usable + padding_idx + 1 in real checkpoints).</summary>
    public int MaxPositionEmbeddings { get; init; } = 512;
    /// <summary>Token type table size (1 in real checkpoints).</summary>
    public int TypeVocabSize { get; init; } = 2;
    /// <summary>LayerNorm epsilon.</summary>
    public double LayerNormEps { get; init; } = 1e-12;
    /// <summary>Padding id, also the position padding index.</summary>
    public int PadTokenId { get; init; } = 1;
    /// <summary>Dropout in the classification head (null ⇒ hidden dropout).</summary>
    public double? ClassifierDropout { get; init; }
    /// <summary>Std of new weights.</summary>
    public double InitializerRange { get; init; } = 0.02;
    /// <summary>Class names by index; the count is the number of labels.</summary>
    public IReadOnlyList<string> Labels { get; init; } = ["LABEL_0", "LABEL_1"];
    /// <summary>null, "regression", "single_label_classification" or "multi_label_classification".</summary>
    public string? ProblemType { get; init; }

    /// <summary>Number of outputs of the classification head.</summary>
    public int NumLabels => Labels.Count;

    /// <summary>Reads a config; unsupported settings are errors that name the file and field.</summary>
    public static RobertaConfig FromHf(HfConfig c)
    {
        string act = c.String("hidden_act", "gelu");
        if (act != "gelu") throw c.Error("hidden_act", $"is \"{act}\"; only the exact (erf) \"gelu\" of RoBERTa is supported");
        string positions = c.String("position_embedding_type", "absolute");
        if (positions != "absolute") throw c.Error("position_embedding_type", $"is \"{positions}\"; only \"absolute\" is supported");
        int vocab = c.Int("vocab_size", null, 1, ConfigLimits.Vocabulary);
        var config = new RobertaConfig
        {
            VocabSize = vocab,
            HiddenSize = c.Int("hidden_size", null, 1, ConfigLimits.Width),
            NumHiddenLayers = c.Int("num_hidden_layers", null, 1, ConfigLimits.Layers),
            NumAttentionHeads = c.Int("num_attention_heads", null, 1, ConfigLimits.Heads),
            IntermediateSize = c.Int("intermediate_size", null, 1, ConfigLimits.IntermediateWidth),
            HiddenDropoutProb = Probability(c, "hidden_dropout_prob", 0.1),
            AttentionProbsDropoutProb = Probability(c, "attention_probs_dropout_prob", 0.1),
            MaxPositionEmbeddings = c.Int("max_position_embeddings", 512, 1, ConfigLimits.Positions),
            TypeVocabSize = c.Int("type_vocab_size", 2, 1, ConfigLimits.Vocabulary),
            LayerNormEps = c.Double("layer_norm_eps", 1e-12, 0, 1),
            PadTokenId = c.Int("pad_token_id", 1, 0, vocab - 1),
            ClassifierDropout = c.Has("classifier_dropout") ? Probability(c, "classifier_dropout", null) : null,
            InitializerRange = c.Double("initializer_range", 0.02, 0, 10),
            Labels = ReadLabels(c),
            ProblemType = c.Has("problem_type") ? c.String("problem_type") : null,
        };
        if (config.HiddenSize % config.NumAttentionHeads != 0)
            throw c.Error("num_attention_heads", $"({config.NumAttentionHeads}) must divide hidden_size ({config.HiddenSize})");
        if (config.MaxPositionEmbeddings <= config.PadTokenId + 1)
            throw c.Error("max_position_embeddings", $"({config.MaxPositionEmbeddings}) must exceed pad_token_id + 1 ({config.PadTokenId + 1}): RoBERTa's positions start after the padding index");
        return config;
    }

    /// <summary>Loads <c>config.json</c> from a model directory.</summary>
    public static RobertaConfig Load(string directory) => FromHf(HfConfig.Load(directory));

    /// <summary>The config in Hugging Face's format.</summary>
    public string ToJson()
    {
        var id2label = new JsonObject();
        var label2id = new JsonObject();
        for (int i = 0; i < Labels.Count; i++) { id2label[i.ToString(System.Globalization.CultureInfo.InvariantCulture)] = Labels[i]; label2id[Labels[i]] = i; }
        var o = new JsonObject
        {
            ["architectures"] = new JsonArray("RobertaForSequenceClassification"),
            ["model_type"] = "roberta",
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["intermediate_size"] = IntermediateSize,
            ["hidden_act"] = "gelu",
            ["hidden_dropout_prob"] = HiddenDropoutProb,
            ["attention_probs_dropout_prob"] = AttentionProbsDropoutProb,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["type_vocab_size"] = TypeVocabSize,
            ["layer_norm_eps"] = LayerNormEps,
            ["pad_token_id"] = PadTokenId,
            ["bos_token_id"] = 0,
            ["eos_token_id"] = 2,
            ["classifier_dropout"] = ClassifierDropout,
            ["initializer_range"] = InitializerRange,
            ["position_embedding_type"] = "absolute",
            ["id2label"] = id2label,
            ["label2id"] = label2id,
            ["problem_type"] = ProblemType,
        };
        return o.ToJsonString(new JsonSerializerOptions { WriteIndented = true });
    }

    private static double Probability(HfConfig c, string name, double? fallback)
    {
        double p = c.Double(name, fallback);
        return p is >= 0 and < 1 ? p : throw c.Error(name, $"is {p}; a dropout probability must be in [0, 1)");
    }

    private static IReadOnlyList<string> ReadLabels(HfConfig c)
    {
        if (c.Json["id2label"] is not JsonObject map) return c.Has("num_labels") ? Enumerable.Range(0, c.Int("num_labels", null, 1, ConfigLimits.Labels)).Select(i => $"LABEL_{i}").ToArray() : ["LABEL_0", "LABEL_1"];
        if (map.Count > ConfigLimits.Labels) throw c.Error("id2label", $"has {map.Count} labels; at most {ConfigLimits.Labels} are supported");
        var labels = new string[map.Count];
        foreach (var (key, value) in map)
        {
            if (!int.TryParse(key, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int i) || i >= labels.Length || labels[i] is not null)
                throw c.Error("id2label", $"must map the ids 0…{labels.Length - 1} once each, found key \"{key}\"");
            labels[i] = value is JsonValue v && v.TryGetValue(out string? name) ? name : throw c.Error("id2label", $"must map id {i} to a string");
        }
        return labels;
    }
}
