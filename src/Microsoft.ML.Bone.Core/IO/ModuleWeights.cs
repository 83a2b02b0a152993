using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.IO;

/// <summary>
/// Moves weights between a TorchSharp module and safetensors checkpoints by name. Module field names mirror the
/// checkpoint's keys (Hugging Face's), so loading is a name match.
/// </summary>
public static class ModuleWeights
{
    /// <summary>
    /// Throws, naming the tensor, unless every parameter and buffer of <paramref name="module"/> (adapters excluded)
    /// has a checkpoint tensor of the same shape. Run it on a module built on the meta device to check a
    /// configuration against a checkpoint before any memory is allocated.
    /// </summary>
    public static void CheckShapes(nn.Module module, SafetensorsCheckpoint checkpoint, Func<string, string?>? rename = null, Func<string, bool>? optional = null)
    {
        foreach (var (name, target) in module.state_dict())
        {
            if (IsAdapter(name)) continue;
            string? source = Source(name, checkpoint, rename, optional);
            if (source is null) continue;
            long[] shape = checkpoint.Entry(source).Shape;
            if (!shape.SequenceEqual(target.shape))
                throw new InvalidDataException($"{checkpoint.Description}: tensor '{source}' has shape [{string.Join(", ", shape)}] but the configuration gives [{string.Join(", ", target.shape)}] (check config.json).");
        }
    }

    /// <summary>
    /// Copies every parameter and persistent buffer of <paramref name="module"/> from <paramref name="checkpoint"/>,
    /// converting dtype and device as needed, each tensor read once straight into the module's memory. Adapter
    /// parameters (under <c>.adapter.</c>) are skipped. Missing tensors and shape mismatches are errors naming the
    /// tensor; checkpoint tensors the module lacks are returned.
    /// </summary>
    /// <param name="module">The module to fill.</param>
    /// <param name="checkpoint">The source checkpoint.</param>
    /// <param name="rename">Optional map from a module name to the checkpoint name (e.g. prefix tolerance); null keeps names.</param>
    /// <param name="optional">Module names that may be absent from the checkpoint (they keep their current values).</param>
    /// <param name="fingerprint">Receives the hash of every tensor read.</param>
    /// <returns>Checkpoint tensor names that were not used.</returns>
    public static IReadOnlyList<string> Load(nn.Module module, SafetensorsCheckpoint checkpoint, Func<string, string?>? rename = null, Func<string, bool>? optional = null, WeightFingerprint? fingerprint = null)
    {
        var used = new HashSet<string>(StringComparer.Ordinal);
        using var noGrad = no_grad();
        foreach (var (name, target) in module.state_dict())
        {
            if (IsAdapter(name)) continue;
            string? source = Source(name, checkpoint, rename, optional);
            if (source is null) continue;
            checkpoint.ReadInto(source, target, fingerprint);
            used.Add(source);
        }
        return checkpoint.Names.Where(n => !used.Contains(n)).Order(StringComparer.Ordinal).ToList();
    }

    /// <summary>
    /// Writes the module's parameters and persistent buffers (adapters excluded) to one safetensors file;
    /// <paramref name="transform"/>, when given, supplies each tensor's saved value (see <see cref="SafetensorsWriter"/>).
    /// </summary>
    public static void Save(nn.Module module, string path, ScalarType? dtype = null, WeightTransform? transform = null) =>
        SafetensorsWriter.Write(path, StateDict(module, dtype), transform, new Dictionary<string, string> { ["format"] = "pt" });

    /// <summary>The module's tensors without adapters, optionally converted to <paramref name="dtype"/> (floating point only).</summary>
    public static List<KeyValuePair<string, Tensor>> StateDict(nn.Module module, ScalarType? dtype = null) =>
        module.state_dict()
            .Where(p => !IsAdapter(p.Key))
            .Select(p => new KeyValuePair<string, Tensor>(p.Key, dtype is { } d && p.Value.is_floating_point() ? p.Value.detach().to(d) : p.Value.detach()))
            .ToList();

    private static string? Source(string name, SafetensorsCheckpoint checkpoint, Func<string, string?>? rename, Func<string, bool>? optional)
    {
        string? source = rename is null ? name : rename(name);
        if (source is not null && checkpoint.Contains(source)) return source;
        if (optional?.Invoke(name) == true) return null;
        throw new InvalidDataException($"{checkpoint.Description}: tensor '{source ?? name}' is missing (needed for '{name}').");
    }

    private static bool IsAdapter(string name) => name.Contains(".adapters.", StringComparison.Ordinal);
}
