using System.Text.Json;

namespace Microsoft.ML.Bone;

/// <summary>Everything about a trained text classifier except its tensors; saved as JSON in the model zip.</summary>
internal sealed record TextClassificationSpec
{
    public required string Sentence1 { get; init; }
    public string? Sentence2 { get; init; }
    public required string Label { get; init; }
    public required string Score { get; init; }
    public required string PredictedLabel { get; init; }
    public required int MaxSequenceLength { get; init; }
    public required int BatchSize { get; init; }
    public required bool IsRegression { get; init; }
    public string[]? LabelNames { get; init; }
    public string? LabelValueType { get; init; }
    public required AdapterKind Adapter { get; init; }
    /// <summary>The adapter as PEFT's adapter_config.json; null for full fine-tuning.</summary>
    public string? AdapterConfigJson { get; init; }
    public required string BaseDirectory { get; init; }
    public required Dictionary<string, string> BaseSha256 { get; init; }
    /// <summary>True when the base weights travel inside the zip (full fine-tuning always embeds them).</summary>
    public required bool Embedded { get; init; }
    public required BaseDType DType { get; init; }

    public string ToJson() => JsonSerializer.Serialize(this);

    public static TextClassificationSpec FromJson(string json) =>
        JsonSerializer.Deserialize<TextClassificationSpec>(json) ?? throw new InvalidDataException("The model zip's text classification settings are empty.");
}
