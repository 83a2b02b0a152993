using System.Text.Json.Nodes;

namespace Microsoft.ML.Bone.Models;

/// <summary>Typed reads of a Hugging Face <c>config.json</c> with errors that name the file and field.</summary>
public sealed class HfConfig
{
    private readonly JsonObject _root;

    private readonly string _prefix;

    private HfConfig(JsonObject root, string source, string prefix = "")
    {
        _root = root;
        Source = source;
        _prefix = prefix;
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
        return Parse(IO.InputFile.ReadAllText(path), path);
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
    public int Int(string name, int? fallback = null) => Int(name, fallback, int.MinValue, int.MaxValue);

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

    /// <summary>
    /// An integer field that must lie in [<paramref name="min"/>, <paramref name="max"/>] (sizes: positive and far
    /// below what would overflow an allocation), checked before anything is built from it.
    /// </summary>
    public int Int(string name, int? fallback, long min, long max)
    {
        long value = Long(name, fallback);
        if (value < min || value > max) throw Error(name, $"is {value}; it must be between {min} and {max}");
        return (int)value;
    }

    /// <summary>A number field that must be finite and lie in (<paramref name="exclusiveMin"/>, <paramref name="max"/>].</summary>
    public double Double(string name, double? fallback, double exclusiveMin, double max)
    {
        double value = Double(name, fallback);
        if (!double.IsFinite(value) || value <= exclusiveMin || value > max) throw Error(name, $"is {value}; it must be a finite number above {exclusiveMin} and at most {max}");
        return value;
    }

    /// <summary>An integer or a list of integers (e.g. <c>eos_token_id</c>), each in [0, <paramref name="max"/>]; empty when absent.</summary>
    public IReadOnlyList<int> Ints(string name, long max)
    {
        var values = _root[name] switch
        {
            null => [],
            JsonArray a => a.Select(n => n is JsonValue v && v.TryGetValue(out long x) ? x : throw Wrong(name, "an integer or a list of integers", a)).ToList(),
            JsonValue v when v.TryGetValue(out long x) => [x],
            var other => throw Wrong(name, "an integer or a list of integers", other),
        };
        foreach (long x in values)
            if (x < 0 || x > max) throw Error(name, $"has {x}; ids must be between 0 and {max}");
        return values.Select(x => (int)x).ToArray();
    }

    /// <summary>A nested object (e.g. <c>rope_scaling</c>) read with the same checks; null when absent or null.</summary>
    public HfConfig? Section(string name) =>
        _root[name] switch
        {
            null => null,
            JsonObject o => new HfConfig(o, Source, _prefix + name + "."),
            var other => throw Wrong(name, "an object", other),
        };

    /// <summary>An error about field <paramref name="name"/>.</summary>
    public InvalidDataException Error(string name, string problem) => new($"{Source}: \"{_prefix}{name}\" {problem}.");

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
