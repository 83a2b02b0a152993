using System.Text.Json.Nodes;

namespace Microsoft.ML.Bone.Models;

/// <summary>Typed reads of a Hugging Face <c>config.json</c> with errors that name the file and field.</summary>
public sealed class HfConfig
{
    private readonly JsonObject _root;

    private HfConfig(JsonObject root, string source)
    {
        _root = root;
        Source = source;
    }

    /// <summary>The file the values came from.</summary>
    public string Source { get; }

    /// <summary>The parsed JSON object.</summary>
    public JsonObject Json => _root;

    /// <summary>Reads <c>config.json</c> from a model directory (or the file itself).</summary>
    public static HfConfig Load(string directoryOrFile)
    {
        string path = Directory.Exists(directoryOrFile) ? Path.Combine(directoryOrFile, "config.json") : directoryOrFile;
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found; a Hugging Face model directory needs config.json.", path);
        return Parse(File.ReadAllText(path), path);
    }

    /// <summary>Parses config JSON text; <paramref name="source"/> names it in errors.</summary>
    public static HfConfig Parse(string json, string source)
    {
        JsonNode? node;
        try { node = JsonNode.Parse(json); }
        catch (System.Text.Json.JsonException e) { throw new InvalidDataException($"{source}: not valid JSON ({e.Message})."); }
        return node is JsonObject o ? new HfConfig(o, source) : throw new InvalidDataException($"{source}: expected a JSON object.");
    }

    /// <summary>True when the field exists and is not null.</summary>
    public bool Has(string name) => _root[name] is not null;

    /// <summary>An integer field, or <paramref name="fallback"/> when absent; throws when present but not an integer.</summary>
    public long Long(string name, long? fallback = null) => Read(name, fallback, (JsonValue v, out long x) => v.TryGetValue(out x), "an integer");

    /// <summary>An int field.</summary>
    public int Int(string name, int? fallback = null) => checked((int)Long(name, fallback));

    /// <summary>A number field.</summary>
    public double Double(string name, double? fallback = null) => Read(name, fallback, (JsonValue v, out double x) => v.TryGetValue(out x), "a number");

    /// <summary>A boolean field.</summary>
    public bool Bool(string name, bool? fallback = null) => Read(name, fallback, (JsonValue v, out bool x) => v.TryGetValue(out x), "true or false");

    /// <summary>A string field.</summary>
    public string String(string name, string? fallback = null) =>
        _root[name] switch
        {
            null when fallback is not null => fallback,
            null => throw Missing(name),
            JsonValue v when v.TryGetValue(out string? s) => s,
            var other => throw Wrong(name, "a string", other),
        };

    /// <summary>An error about field <paramref name="name"/>.</summary>
    public InvalidDataException Error(string name, string problem) => new($"{Source}: \"{name}\" {problem}.");

    private delegate bool TryRead<T>(JsonValue value, out T result);

    private T Read<T>(string name, T? fallback, TryRead<T> tryRead, string what) where T : struct =>
        _root[name] switch
        {
            null when fallback is not null => fallback.Value,
            null => throw Missing(name),
            JsonValue v when tryRead(v, out T x) => x,
            var other => throw Wrong(name, what, other),
        };

    private InvalidDataException Missing(string name) => Error(name, "is missing");

    private InvalidDataException Wrong(string name, string what, JsonNode node) => Error(name, $"must be {what}, got {node.ToJsonString()}");
}
