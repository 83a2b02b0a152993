using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.ML.Bone.Tasks;

namespace Microsoft.ML.Bone.Persistence;

/// <summary>
/// Everything about a fine-tuned model except its tensors, saved as JSON in the model zip: the base it was trained
/// on, the adapter, the shared settings, and the task's own part (exactly one of <see cref="TextClassification"/>
/// and <see cref="CausalLM"/>). One record and one zip layout serve every task.
/// </summary>
internal sealed record SavedModel
{
    public required BaseModelRecord Base { get; init; }
    public required AdapterKind Adapter { get; init; }
    /// <summary>The adapter as PEFT's adapter_config.json; null for full fine-tuning.</summary>
    public string? AdapterConfigJson { get; init; }
    public required int MaxSequenceLength { get; init; }
    public required int BatchSize { get; init; }
    /// <summary>libtorch intra-op threads for scoring and generation; 0 = one per logical core.</summary>
    public int Threads { get; init; }
    public TextClassificationSettings? TextClassification { get; init; }
    public CausalLMSettings? CausalLM { get; init; }
    /// <summary>Size and SHA-256 of every entry the model wrote beside this record (adapter, tokenizer files, embedded base).</summary>
    public Dictionary<string, FileIdentity> Entries { get; init; } = [];

    // Strict on read: a missing required field, a null where the type has none, an unknown field or an enum given as a
    // number is an error, not a default.
    private static readonly JsonSerializerOptions Json = new()
    {
        Converters = { new JsonStringEnumConverter(allowIntegerValues: false) },
        RespectNullableAnnotations = true,
        RespectRequiredConstructorParameters = true,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
        MaxDepth = 16,
    };

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    /// <summary>Parses and validates the record; anything malformed is an error naming the source and the field.</summary>
    public static SavedModel FromJson(string json, string source)
    {
        SavedModel? model;
        try { model = JsonSerializer.Deserialize<SavedModel>(json, Json); }
        catch (Exception e) when (e is JsonException or NotSupportedException or ArgumentException)
        {
            throw new InvalidDataException($"{source}: the model's settings are not readable ({e.Message}).", e);
        }
        if (model is null) throw new InvalidDataException($"{source}: the model's settings are empty.");
        SavedModelValidation.Check(model, source);
        return model;
    }
}

/// <summary>The frozen base: where it was, what it was (the identity of its files), and whether the zip carries it.</summary>
internal sealed record BaseModelRecord
{
    /// <summary>The architecture (model_type or file kind) it loaded as.</summary>
    public required string Architecture { get; init; }
    /// <summary>Absolute path of the checkpoint directory (or single file) at training time.</summary>
    public required string Path { get; init; }
    /// <summary>Per file the model was built from: its size and content digest (see <see cref="IO.WeightFingerprint"/>).</summary>
    public required Dictionary<string, FileIdentity> Files { get; init; }
    /// <summary>True when the base weights travel inside the zip (full fine-tuning always embeds them).</summary>
    public required bool Embedded { get; init; }
    public required BaseDType DType { get; init; }
}

/// <summary>A file's size (checked before loading) and content digest (checked while loading).</summary>
internal sealed record FileIdentity(long Size, string Sha256);

/// <summary>What a text classifier needs beyond the shared settings.</summary>
internal sealed record TextClassificationSettings
{
    public required string Sentence1 { get; init; }
    public string? Sentence2 { get; init; }
    public required string Label { get; init; }
    public required string Score { get; init; }
    public required string PredictedLabel { get; init; }
    public required bool IsRegression { get; init; }
    public string[]? LabelNames { get; init; }
    public string? LabelValueType { get; init; }
}

/// <summary>What a causal LM needs beyond the shared settings.</summary>
internal sealed record CausalLMSettings
{
    public required string Prompt { get; init; }
    public required string Response { get; init; }
    public required string Completion { get; init; }
    public required string PromptTemplate { get; init; }
    public required GenerationOptions Generation { get; init; }
    public required string[] StopStrings { get; init; }

    public string Format(string prompt) => PromptTemplate.Replace("{prompt}", prompt, StringComparison.Ordinal);
}
