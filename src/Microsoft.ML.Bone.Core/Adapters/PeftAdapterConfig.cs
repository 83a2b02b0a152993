using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.ML.Bone.Adapters.Bone;
using Microsoft.ML.Bone.Adapters.Lora;
using Microsoft.ML.Bone.IO;

namespace Microsoft.ML.Bone.Adapters;

/// <summary>
/// Which PEFT type Bone-family adapters are written as. PEFT renamed Bone to MiSS (same math, <c>miss_block</c> keys)
/// and removed <c>BONE</c> in v0.19.
/// </summary>
public enum PeftFormat
{
    /// <summary><c>peft_type: "MISS"</c>, <c>…miss_block</c> keys: read by PEFT 0.17 and later (the default).</summary>
    Miss,

    /// <summary><c>peft_type: "BONE"</c>, <c>…bone_block</c> keys: read by PEFT 0.14 to 0.18 only. No MiSS-mini, no dropout.</summary>
    Bone,
}

/// <summary>What an <c>adapter_config.json</c> says: the adapter options plus PEFT's bookkeeping fields.</summary>
/// <param name="Config">The adapter options (<see cref="BoneConfig"/> or <see cref="LoraConfig"/>).</param>
/// <param name="TaskType">PEFT <c>task_type</c>, e.g. <c>CAUSAL_LM</c>, <c>SEQ_CLS</c>; null when absent.</param>
/// <param name="BaseModelNameOrPath">PEFT <c>base_model_name_or_path</c>; null when absent.</param>
/// <param name="Format">How Bone-family adapters are (or were) written; LoRA has one format.</param>
public sealed record PeftAdapterConfig(AdapterConfig Config, string? TaskType = null, string? BaseModelNameOrPath = null, PeftFormat Format = PeftFormat.Miss)
{
    /// <summary>File name PEFT uses for the configuration.</summary>
    public const string FileName = "adapter_config.json";

    /// <summary>The tensor suffix of Bone-family blocks in <paramref name="format"/>.</summary>
    public static string BlockSuffix(PeftFormat format) => format == PeftFormat.Bone ? "bone_block" : "miss_block";

    /// <summary>
    /// The JSON PEFT writes (keys sorted, two-space indent, <c>inference_mode</c> true), with the fields of PEFT's
    /// <c>MissConfig</c> (or, for <see cref="PeftFormat.Bone"/>, <c>BoneConfig</c>); nothing newer than the oldest
    /// release that reads the type (0.17 for MISS, 0.14 for BONE and LORA), so all later ones read it too.
    /// </summary>
    public string ToJson()
    {
        if (Config is StateTuning.StateTuningConfig)
        {
            // Not a Hugging Face PEFT type: only what this library needs to restore it.
            var state = new JsonObject { ["base_model_name_or_path"] = BaseModelNameOrPath, ["peft_type"] = StateTuning.StateTuningConfig.Type, ["task_type"] = TaskType };
            return state.ToJsonString(new JsonSerializerOptions { WriteIndented = true, IndentSize = 2 });
        }
        var o = new SortedDictionary<string, JsonNode?>(StringComparer.Ordinal)
        {
            ["auto_mapping"] = null,
            ["base_model_name_or_path"] = BaseModelNameOrPath,
            ["bias"] = "none",
            ["exclude_modules"] = Config.ExcludeModulesRegex is not null ? JsonValue.Create(Config.ExcludeModulesRegex) : StringsOrNull(Config.ExcludeModules),
            ["inference_mode"] = true,
            ["layers_pattern"] = Config.LayersPattern,
            ["layers_to_transform"] = Config.LayersToTransform.Count == 0 ? null : new JsonArray(Config.LayersToTransform.Select(i => (JsonNode?)i).ToArray()),
            ["modules_to_save"] = StringsOrNull(Config.ModulesToSave),
            ["peft_type"] = Config.PeftType,
            ["r"] = Config.Rank,
            ["revision"] = null,
            ["target_modules"] = Config.TargetModulesRegex is not null ? JsonValue.Create(Config.TargetModulesRegex) : new JsonArray(Config.TargetModules.Select(t => (JsonNode?)t).ToArray()),
            ["task_type"] = TaskType,
        };
        switch (Config)
        {
            case BoneConfig bone:
                if (!bone.IsPeftCompatible)
                    throw new NotSupportedException($"PEFT has no Bat with {bone.BatGrouping} grouping and {bone.BatProduct} product; only the output-block, matrix-product Bat can be written as a PEFT adapter.");
                o["peft_type"] = Format == PeftFormat.Bone ? "BONE" : "MISS";
                o["init_weights"] = bone.Variant switch
                {
                    BoneVariant.Bat => JsonValue.Create("bat"),
                    BoneVariant.Mini => JsonValue.Create("mini"),
                    _ => JsonValue.Create(!bone.RandomInit),
                };
                if (Format == PeftFormat.Bone)
                {
                    if (bone.Variant == BoneVariant.Mini) throw new NotSupportedException("MiSS-mini has no BONE form (PEFT 0.14–0.18 do not know it); write MISS, which PEFT 0.17 and later read.");
                    if (bone.Dropout != 0) throw new NotSupportedException($"BONE has no dropout field; write MISS (PEFT 0.17 and later), or set Dropout = 0 (dropout only acts in training).");
                }
                else
                {
                    o["mini_r"] = bone.MiniR;
                    o["miss_dropout"] = PythonFloat(bone.Dropout);
                }
                break;
            case LoraConfig lora:
                o["alpha_pattern"] = new JsonObject();
                o["fan_in_fan_out"] = false;
                o["init_lora_weights"] = lora.Init switch
                {
                    LoraInit.Default => JsonValue.Create(true),
                    LoraInit.Gaussian => JsonValue.Create("gaussian"),
                    LoraInit.PiSSA => JsonValue.Create(lora.PissaIterations > 0 ? $"pissa_niter_{lora.PissaIterations}" : "pissa"),
                    _ => JsonValue.Create("olora"),
                };
                o["layer_replication"] = null;
                o["loftq_config"] = new JsonObject();
                o["lora_alpha"] = lora.Alpha == Math.Floor(lora.Alpha) ? JsonValue.Create((long)lora.Alpha) : JsonValue.Create(lora.Alpha);
                o["lora_dropout"] = PythonFloat(lora.Dropout);
                o["megatron_config"] = null;
                o["megatron_core"] = "megatron.core";
                o["rank_pattern"] = new JsonObject();
                o["use_dora"] = false;
                o["use_rslora"] = lora.UseRsLora;
                break;
            default:
                throw new NotSupportedException($"{Config.GetType().Name} has no PEFT file format.");
        }
        var root = new JsonObject();
        foreach (var (key, value) in o) root[key] = value;
        return root.ToJsonString(new JsonSerializerOptions { WriteIndented = true, IndentSize = 2 });
    }

    /// <summary>Reads <c>adapter_config.json</c>; errors name <paramref name="source"/> and the field.</summary>
    public static PeftAdapterConfig Parse(string json, string source)
    {
        JsonObject o;
        try { o = JsonNode.Parse(json) as JsonObject ?? throw new InvalidDataException($"{source}: expected a JSON object."); }
        catch (JsonException e) { throw new InvalidDataException($"{source}: not valid JSON ({e.Message}).", e); }

        var reader = new FieldReader(o, source);
        string peftType = reader.String("peft_type") ?? throw reader.Error("peft_type", "is missing");
        if (peftType == StateTuning.StateTuningConfig.Type)
            return new PeftAdapterConfig(new StateTuning.StateTuningConfig(), reader.String("task_type"), reader.String("base_model_name_or_path"));
        string bias = reader.String("bias") ?? "none";
        if (bias != "none") throw reader.Error("bias", $"is \"{bias}\"; only \"none\" is supported (trained biases are not part of PEFT Bone files)");
        int r = reader.Int("r") ?? throw reader.Error("r", "is missing");

        AdapterConfig config = peftType switch
        {
            "BONE" or "MISS" => ReadBone(reader, r, peftType),
            "LORA" => ReadLora(reader, r),
            _ => throw reader.Error("peft_type", $"is \"{peftType}\"; supported: BONE, MISS, LORA, {StateTuning.StateTuningConfig.Type}"),
        };

        switch (o["target_modules"])
        {
            case JsonValue v when v.TryGetValue(out string? regex):
                config.TargetModulesRegex = regex;
                break;
            case JsonArray:
                config.TargetModules = reader.Strings("target_modules");
                break;
            default:
                throw reader.Error("target_modules", "must be a list of module names or a regular expression (PEFT's per-architecture default is not applied here)");
        }
        switch (o["exclude_modules"])
        {
            case null: break;
            case JsonValue v when v.TryGetValue(out string? regex): config.ExcludeModulesRegex = regex; break;
            default: config.ExcludeModules = reader.Strings("exclude_modules"); break;
        }
        config.ModulesToSave = reader.Strings("modules_to_save");
        config.LayersToTransform = o["layers_to_transform"] is JsonValue single
            ? [reader.Int("layers_to_transform")!.Value]
            : reader.Ints("layers_to_transform");
        config.LayersPattern = o["layers_pattern"] switch
        {
            null => null,
            JsonArray a => "(?:" + string.Join('|', reader.Strings("layers_pattern")) + ")",
            _ => reader.String("layers_pattern"),
        };
        try { config.Validate(); }
        catch (ArgumentException e) { throw new InvalidDataException($"{source}: {e.Message}", e); }
        return new PeftAdapterConfig(config, reader.String("task_type"), reader.String("base_model_name_or_path"), peftType == "BONE" ? PeftFormat.Bone : PeftFormat.Miss);
    }

    private static BoneConfig ReadBone(FieldReader reader, int r, string peftType)
    {
        var config = new BoneConfig { R = r };
        bool miss = peftType == "MISS";
        switch (reader.Node("init_weights"))
        {
            case null: break;
            case JsonValue v when v.TryGetValue(out bool b): config.RandomInit = !b; break;
            case JsonValue v when v.TryGetValue(out string? s) && s == "bat": config.Variant = BoneVariant.Bat; break;
            case JsonValue v when miss && v.TryGetValue(out string? s) && s == "mini": config.Variant = BoneVariant.Mini; break;
            default: throw reader.Error("init_weights", $"is {reader.Node("init_weights")!.ToJsonString()}; supported: true, false, \"bat\"{(miss ? ", \"mini\"" : "")}");
        }
        if (miss)
        {
            config.MiniR = reader.Int("mini_r") ?? 1;
            config.Dropout = reader.Double("miss_dropout") ?? 0;
        }
        return config;
    }

    private static LoraConfig ReadLora(FieldReader reader, int r)
    {
        var config = new LoraConfig
        {
            R = r,
            Alpha = reader.Double("lora_alpha") ?? 8,
            Dropout = reader.Double("lora_dropout") ?? 0,
            UseRsLora = reader.Bool("use_rslora") ?? false,
        };
        if (reader.Bool("use_dora") == true) throw reader.Error("use_dora", "is true; DoRA is not supported");
        if (reader.Bool("fan_in_fan_out") == true) throw reader.Error("fan_in_fan_out", "is true; only nn.Linear-style [out, in] weights are supported");
        foreach (string pattern in new[] { "rank_pattern", "alpha_pattern" })
            if (reader.Node(pattern) is JsonObject p && p.Count > 0) throw reader.Error(pattern, "is not empty; per-module ranks are not supported");
        switch (reader.Node("init_lora_weights"))
        {
            case null: break;
            case JsonValue v when v.TryGetValue(out bool _): break;
            case JsonValue v when v.TryGetValue(out string? s) && s == "gaussian": config.Init = LoraInit.Gaussian; break;
            case JsonValue v when v.TryGetValue(out string? s) && s == "pissa": config.Init = LoraInit.PiSSA; break;
            case JsonValue v when v.TryGetValue(out string? s) && s.StartsWith("pissa_niter_", StringComparison.Ordinal)
                                  && int.TryParse(s["pissa_niter_".Length..], NumberStyles.None, CultureInfo.InvariantCulture, out int n):
                config.Init = LoraInit.PiSSA;
                config.PissaIterations = n;
                break;
            case JsonValue v when v.TryGetValue(out string? s) && s == "olora": config.Init = LoraInit.OLoRA; break;
            default: throw reader.Error("init_lora_weights", $"is {reader.Node("init_lora_weights")!.ToJsonString()}; supported: true, false, \"gaussian\", \"pissa\", \"pissa_niter_N\", \"olora\"");
        }
        return config;
    }

    // Python's json writes floats with a decimal point (0.0, not 0); PEFT reads either, but files then match byte for byte.
    private static JsonNode PythonFloat(double value)
    {
        string text = value.ToString("R", CultureInfo.InvariantCulture);
        if (!text.Contains('.') && !text.Contains('E')) text += ".0";
        return JsonNode.Parse(text)!;
    }

    private static JsonArray? StringsOrNull(IReadOnlyList<string> values) =>
        values.Count == 0 ? null : new JsonArray(values.Select(v => (JsonNode?)v).ToArray());

    /// <summary>Typed access to optional fields with errors that name the file and field.</summary>
    private sealed class FieldReader(JsonObject o, string source)
    {
        public JsonNode? Node(string name) => o[name];

        public InvalidDataException Error(string field, string problem) => new($"{source}: \"{field}\" {problem}.");

        public string? String(string name) => Value(name, "a string") is { } v ? (v.TryGetValue(out string? s) ? s : throw Wrong(name, "a string")) : null;

        public bool? Bool(string name) => Value(name, "true or false") is { } v ? (v.TryGetValue(out bool b) ? b : throw Wrong(name, "true or false")) : null;

        public double? Double(string name) => Value(name, "a number") is { } v ? (v.TryGetValue(out double d) ? d : throw Wrong(name, "a number")) : null;

        public int? Int(string name) => Value(name, "an integer") is { } v ? (v.TryGetValue(out int i) ? i : throw Wrong(name, "an integer")) : null;

        public IReadOnlyList<string> Strings(string name) => List(name, (JsonValue v, out string? s) => v.TryGetValue(out s), "a list of strings")!;

        public IReadOnlyList<int> Ints(string name) => List(name, (JsonValue v, out int i) => v.TryGetValue(out i), "a list of integers");

        private delegate bool TryGet<T>(JsonValue v, out T value);

        private JsonValue? Value(string name, string what) => o[name] switch
        {
            null => null,
            JsonValue v => v,
            _ => throw Wrong(name, what),
        };

        private InvalidDataException Wrong(string name, string what) => Error(name, $"must be {what}, got {o[name]!.ToJsonString()}");

        private IReadOnlyList<T> List<T>(string name, TryGet<T> tryGet, string what)
        {
            JsonNode? node = o[name];
            if (node is null) return [];
            if (node is not JsonArray array) throw Error(name, $"must be {what}, got {node.ToJsonString()}");
            var result = new List<T>();
            foreach (JsonNode? item in array)
            {
                if (item is JsonValue v && tryGet(v, out T value)) result.Add(value);
                else throw Error(name, $"must be {what}, got {node.ToJsonString()}");
            }
            return result;
        }
    }
}
