using System.Text.Json;
using Microsoft.ML.Bone.Tasks;

namespace Microsoft.ML.Bone;

/// <summary>Everything about a trained causal LM except its tensors; saved as JSON in the model zip.</summary>
internal sealed record CausalLMSpec
{
    public required string Prompt { get; init; }
    public required string Response { get; init; }
    public required string Completion { get; init; }
    public required string PromptTemplate { get; init; }
    public required int MaxSequenceLength { get; init; }
    public required int BatchSize { get; init; }
    public required GenerationOptions Generation { get; init; }
    public required string[] StopStrings { get; init; }
    public required AdapterKind Adapter { get; init; }
    public string? AdapterConfigJson { get; init; }
    public required string BaseDirectory { get; init; }
    public required Dictionary<string, string> BaseSha256 { get; init; }
    public required bool Embedded { get; init; }
    public required BaseDType DType { get; init; }

    public string ToJson() => JsonSerializer.Serialize(this);

    public static CausalLMSpec FromJson(string json) =>
        JsonSerializer.Deserialize<CausalLMSpec>(json) ?? throw new InvalidDataException("The model zip's causal-LM settings are empty.");

    public string Format(string prompt) => PromptTemplate.Replace("{prompt}", prompt, StringComparison.Ordinal);
}
