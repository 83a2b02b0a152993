using Microsoft.ML.Bone.Adapters.Bone;
using Microsoft.ML.Bone.Adapters.Lora;
using Microsoft.ML.Bone.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Adapters;

/// <summary>
/// Hugging Face PEFT adapter folders: <c>adapter_config.json</c> + <c>adapter_model.safetensors</c> with PEFT's key
/// names (<c>base_model.model.&lt;module path&gt;.miss_block</c>, <c>….lora_A.weight</c>, modules to save under their
/// own path). Reads BONE, MISS and LORA folders; writes MISS by default (PEFT 0.17 and later) or BONE on request
/// (PEFT 0.14–0.18), and LORA.
/// </summary>
public static class PeftAdapterDirectory
{
    /// <summary>File name of the adapter tensors.</summary>
    public const string WeightsFileName = "adapter_model.safetensors";

    /// <summary>
    /// Writes <paramref name="model"/>'s adapters to <paramref name="directory"/>: a new (or empty) folder appears whole
    /// or not at all; in an existing adapter folder each of the two files is replaced atomically, the weights first. PiSSA and OLoRA adapters are written, as PEFT's conversion does, as a plain rank-2r LoRA
    /// that applies to the original (not the residual) base weights.
    /// </summary>
    public static void Save(AdapterModel model, string directory, string? baseModelNameOrPath = null, string? taskType = null, PeftFormat format = PeftFormat.Miss)
    {
        var (config, tensors) = model.Config is LoraConfig { MutatesBaseWeights: true } lora
            ? ConvertMutatedLora(model, lora)
            : (model.Config, model.PeftStateDict().Select(p => new KeyValuePair<string, Tensor>(RenameBlock(p.Key, format), p.Value.detach())).ToList());
        string json = new PeftAdapterConfig(config, taskType, baseModelNameOrPath, format).ToJson();
        Write(directory, json, tensors);
    }

    /// <summary>Writes <paramref name="configJson"/> and <paramref name="tensors"/> (PEFT keys) as an adapter folder.</summary>
    internal static void Write(string directory, string configJson, IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        if (AtomicDirectory.IsMissingOrEmpty(directory)) AtomicDirectory.Write(directory, folder => WriteFiles(folder, configJson, tensors));
        else WriteFiles(directory, configJson, tensors);
    }

    /// <summary>The two files of an adapter folder, into an existing <paramref name="folder"/>: the weights, then the config.</summary>
    internal static void WriteFiles(string folder, string configJson, IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        SafetensorsWriter.Write(Path.Combine(folder, WeightsFileName), tensors, new Dictionary<string, string> { ["format"] = "pt" });
        AtomicFile.Write(Path.Combine(folder, PeftAdapterConfig.FileName), s => s.Write(System.Text.Encoding.UTF8.GetBytes(configJson)));
    }

    /// <summary>
    /// Reads an adapter folder. Tensors come back as CPU tensors under PEFT's keys; BONE keys (<c>bone_block</c>) are
    /// renamed to MiSS's <c>miss_block</c>. Errors name the file and the problem.
    /// </summary>
    public static (PeftAdapterConfig Config, Dictionary<string, Tensor> Tensors) Read(string directory)
    {
        if (!Directory.Exists(directory)) throw new FileNotFoundException($"{directory}: adapter directory not found.");
        string configPath = Path.Combine(directory, PeftAdapterConfig.FileName);
        if (!File.Exists(configPath)) throw new FileNotFoundException($"{configPath}: not found; an adapter directory needs {PeftAdapterConfig.FileName}.");
        PeftAdapterConfig config = PeftAdapterConfig.Parse(IO.InputFile.ReadAllText(configPath), configPath);

        string weightsPath = Path.Combine(directory, WeightsFileName);
        if (!File.Exists(weightsPath))
        {
            string pickle = Path.Combine(directory, "adapter_model.bin");
            throw new FileNotFoundException(File.Exists(pickle)
                ? $"{pickle}: pickled adapters are not read (pickle can run code); save the adapter with safe_serialization=True to get {WeightsFileName}."
                : $"{weightsPath}: not found.");
        }
        using var file = SafetensorsFile.Open(weightsPath);
        var tensors = new Dictionary<string, Tensor>();
        foreach (SafetensorsEntry entry in file.Entries)
        {
            string key = entry.Name.EndsWith(".bone_block", StringComparison.Ordinal) ? entry.Name[..^"bone_block".Length] + "miss_block" : entry.Name;
            if (!key.StartsWith(AdapterModel.PeftKeyPrefix, StringComparison.Ordinal))
                throw new InvalidDataException($"{weightsPath}: tensor '{entry.Name}' does not start with '{AdapterModel.PeftKeyPrefix}' as PEFT keys do.");
            tensors[key] = file.Load(entry.Name);
        }
        return (config, tensors);
    }

    // Bone-family blocks are miss_block in memory (PEFT's current name) and bone_block in BONE files.
    private static string RenameBlock(string key, PeftFormat format) =>
        format == PeftFormat.Bone && key.EndsWith(".miss_block", StringComparison.Ordinal) ? key[..^"miss_block".Length] + "bone_block" : key;

    /// <summary>Injects the adapter described in <paramref name="directory"/> into <paramref name="model"/> and loads its weights.</summary>
    public static AdapterModel Load(nn.Module model, string directory)
    {
        var (config, tensors) = Read(directory);
        try
        {
            AdapterModel adapted;
            try { adapted = AdapterModel.Inject(model, config.Config); }
            catch (ArgumentException e) { throw new InvalidDataException($"{Path.Combine(directory, PeftAdapterConfig.FileName)}: this adapter does not fit the model: {e.Message}", e); }
            adapted.LoadPeftStateDict(tensors, Path.Combine(directory, WeightsFileName));
            return adapted;
        }
        finally
        {
            foreach (Tensor t in tensors.Values) t.Dispose();
        }
    }

    // W = W_res + s·B₀A₀, so W_res + s·BA = W + s·(BA − B₀A₀) = W + s'·[B, −B₀]·[A; A₀] with rank 2r and the same scale s.
    private static (AdapterConfig, List<KeyValuePair<string, Tensor>>) ConvertMutatedLora(AdapterModel model, LoraConfig lora)
    {
        var converted = (LoraConfig)lora.Clone();
        converted.R = 2 * lora.R;
        converted.Alpha = lora.UseRsLora ? lora.Alpha * Math.Sqrt(2) : 2 * lora.Alpha;
        converted.Init = LoraInit.Default;
        converted.PissaIterations = 0;
        var tensors = new List<KeyValuePair<string, Tensor>>();
        foreach (var (path, layer) in model.AdaptedLayers)
        {
            var adapter = (LoraLayer)model.AdapterOf(layer);
            var (a0, b0) = adapter.InitialFactors ?? throw new InvalidOperationException($"'{path}' has no initial factors to convert.");
            string prefix = AdapterModel.PeftKeyPrefix + path + ".";
            tensors.Add(new(prefix + "lora_A.weight", cat([adapter.lora_A.weight.detach(), a0], 0)));
            tensors.Add(new(prefix + "lora_B.weight", cat([adapter.lora_B.weight.detach(), -b0], 1)));
        }
        foreach (var (name, p) in model.SavedModuleParameters) tensors.Add(new(AdapterModel.PeftKeyPrefix + name, p.detach()));
        return (converted, tensors);
    }
}
