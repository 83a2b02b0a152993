using Microsoft.ML.Bone.Adapters.Bone;
using Microsoft.ML.Bone.Adapters.Lora;
using Microsoft.ML.Bone.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Adapters;

/// <summary>What <see cref="PeftCheckpointMerger.Merge"/> did.</summary>
/// <param name="MergedWeights">Base tensors that received an adapter update.</param>
/// <param name="ReplacedTensors">Base tensors replaced by modules-to-save tensors.</param>
/// <param name="AddedTensors">Modules-to-save tensors the base checkpoint did not have (e.g. a new classifier).</param>
public sealed record MergeReport(IReadOnlyList<string> MergedWeights, IReadOnlyList<string> ReplacedTensors, IReadOnlyList<string> AddedTensors);

/// <summary>
/// Merges a PEFT adapter folder into a Hugging Face checkpoint folder, for any architecture: adapter keys are mapped
/// to base tensors by name (<c>base_model.model.X.miss_block</c> or <c>….bone_block</c> → <c>X.weight</c>). The output folder has the same
/// files, tensor names, shapes and dtypes (shards and index included); the update is computed in float32 and cast
/// back to each weight's dtype.
/// </summary>
public static class PeftCheckpointMerger
{
    /// <summary>
    /// Merges <paramref name="adapterDirectory"/> into the checkpoint in <paramref name="modelDirectory"/> and writes
    /// the result to <paramref name="outputDirectory"/>, which must not exist or be empty. Every check runs before
    /// anything is written, and the output is assembled in a temporary folder that is renamed into place at the end,
    /// so a failure leaves nothing behind. With <paramref name="safe"/> a non-finite merged weight is an error.
    /// </summary>
    public static MergeReport Merge(string modelDirectory, string adapterDirectory, string outputDirectory, bool safe = true)
    {
        if (!Directory.Exists(modelDirectory)) throw new FileNotFoundException($"{modelDirectory}: model directory not found.");
        string configPath = Path.Combine(modelDirectory, "config.json");
        if (!File.Exists(configPath)) throw new FileNotFoundException($"{configPath}: not found; a Hugging Face model directory needs config.json.");
        try { System.Text.Json.JsonDocument.Parse(IO.InputFile.ReadAllText(configPath)).Dispose(); }
        catch (System.Text.Json.JsonException e) { throw new InvalidDataException($"{configPath}: not valid JSON ({e.Message}).", e); }
        AtomicDirectory.CheckMissingOrEmpty(outputDirectory);

        var (adapter, tensors) = PeftAdapterDirectory.Read(adapterDirectory);
        PeftFormat format = adapter.Format;
        string adapterFile = Path.Combine(adapterDirectory, PeftAdapterDirectory.WeightsFileName);
        try
        {
            using var checkpoint = SafetensorsCheckpoint.Open(modelDirectory);
            Plan plan = BuildPlan(adapter.Config, format, tensors, checkpoint, adapterFile);
            AtomicDirectory.Write(outputDirectory, temp => WriteOutput(modelDirectory, checkpoint, plan, temp, safe));
            return new MergeReport(plan.Updates.Keys.Order(StringComparer.Ordinal).ToList(), plan.Replacements.Keys.Where(checkpoint.Contains).Order(StringComparer.Ordinal).ToList(), plan.Added);
        }
        finally
        {
            foreach (Tensor t in tensors.Values) t.Dispose();
        }
    }

    /// <summary>How one base weight changes: W → f(W).</summary>
    private delegate Tensor Update(Tensor weightF32);

    private sealed record Plan(Dictionary<string, Update> Updates, Dictionary<string, Tensor> Replacements, List<string> Added);

    private static Plan BuildPlan(AdapterConfig config, PeftFormat format, Dictionary<string, Tensor> tensors, SafetensorsCheckpoint checkpoint, string adapterFile)
    {
        var updates = new Dictionary<string, Update>();
        var replacements = new Dictionary<string, Tensor>();
        var added = new List<string>();
        var loraA = new Dictionary<string, Tensor>();
        var loraB = new Dictionary<string, Tensor>();

        bool isLora = config is LoraConfig;
        foreach (var (key, t) in tensors)
        {
            // PEFT before 0.7 saved some adapters with the adapter name in the key ("lora_A.default.weight").
            string name = key[AdapterModel.PeftKeyPrefix.Length..]
                .Replace(".lora_A.default.weight", ".lora_A.weight", StringComparison.Ordinal)
                .Replace(".lora_B.default.weight", ".lora_B.weight", StringComparison.Ordinal)
                .Replace(".miss_block.default", ".miss_block", StringComparison.Ordinal);
            bool boneKey = name.EndsWith(".miss_block", StringComparison.Ordinal);
            bool loraKey = name.EndsWith(".lora_A.weight", StringComparison.Ordinal) || name.EndsWith(".lora_B.weight", StringComparison.Ordinal);
            if ((boneKey && isLora) || (loraKey && !isLora))
                throw new InvalidDataException($"{adapterFile}: '{key}' is a {(boneKey ? "MiSS / Bone" : "LoRA")} tensor, but adapter_config.json says peft_type {(isLora ? "LORA" : "MISS / BONE")}.");
            if (boneKey) AddBone(name[..^".miss_block".Length], t);
            else if (name.EndsWith(".lora_A.weight", StringComparison.Ordinal)) loraA[name[..^".lora_A.weight".Length]] = t;
            else if (name.EndsWith(".lora_B.weight", StringComparison.Ordinal)) loraB[name[..^".lora_B.weight".Length]] = t;
            else if (ResolveBase(name) is { } baseName)
            {
                long[] shape = checkpoint.Entry(baseName).Shape;
                if (!shape.SequenceEqual(t.shape)) throw ShapeError(key, t.shape, baseName, shape, "the base tensor");
                replacements[baseName] = t;
            }
            else if (config.ModulesToSave.Any(m => ("." + name).Contains("." + m + ".", StringComparison.Ordinal)))
            {
                replacements[name] = t;
                added.Add(name);
            }
            else
                throw new InvalidDataException($"{adapterFile}: '{key}' is not an adapter tensor of this peft_type, not in the base model, and not under modules_to_save [{string.Join(", ", config.ModulesToSave)}]; refusing to guess what it is.");
        }
        foreach (string module in loraA.Keys.Union(loraB.Keys))
        {
            if (!loraA.TryGetValue(module, out Tensor? a)) throw new InvalidDataException($"{adapterFile}: '{AdapterModel.PeftKeyPrefix}{module}.lora_B.weight' has no matching lora_A.weight.");
            if (!loraB.TryGetValue(module, out Tensor? b)) throw new InvalidDataException($"{adapterFile}: '{AdapterModel.PeftKeyPrefix}{module}.lora_A.weight' has no matching lora_B.weight.");
            var (weightName, shape) = BaseWeight(module, "lora_A.weight");
            if (a.ndim != 2 || b.ndim != 2 || a.shape[1] != shape[1] || b.shape[0] != shape[0] || a.shape[0] != b.shape[1])
                throw new InvalidDataException($"{adapterFile}: LoRA factors of '{module}' are A [{string.Join(", ", a.shape)}], B [{string.Join(", ", b.shape)}] but the base weight '{weightName}' is [{string.Join(", ", shape)}] (A must be [r, {shape[1]}] and B [{shape[0]}, r]).");
            double scale = config is LoraConfig lora ? lora.Scale : 1;
            updates[weightName] = w => w + scale * b.to(ScalarType.Float32).matmul(a.to(ScalarType.Float32));
        }
        bool allZero;
        using (no_grad())
            allZero = tensors.Where(t => !t.Key.Contains(".lora_A.", StringComparison.Ordinal) && (t.Key.EndsWith("_block", StringComparison.Ordinal) || t.Key.EndsWith("_block.default", StringComparison.Ordinal) || t.Key.Contains(".lora_B.", StringComparison.Ordinal)))
                .All(t => t.Value.count_nonzero().item<long>() == 0);
        if (updates.Count == 0 && replacements.Count == 0)
            throw new InvalidDataException($"{adapterFile}: the adapter has no tensors to merge.");
        if (allZero && replacements.Count == 0)
            throw new InvalidDataException($"{adapterFile}: every adapter block is zero (an untrained adapter, Bone and LoRA start at zero): merging would change nothing.");
        return new Plan(updates, replacements, added);

        void AddBone(string module, Tensor block)
        {
            string suffix = PeftAdapterConfig.BlockSuffix(format);
            var (weightName, shape) = BaseWeight(module, suffix);
            long outF = shape[0], inF = shape[1];
            string key = $"{AdapterModel.PeftKeyPrefix}{module}.{suffix}";
            if (block.ndim == 2 && config is BoneConfig { Variant: BoneVariant.Mini } mini)
            {
                long m = block.shape[1];
                if (m != mini.MiniR || outF % m != 0) throw ShapeError(key, block.shape, weightName, shape, $"MiSS-mini blocks must be [r, mini_r = {mini.MiniR}] with mini_r dividing {outF}");
                updates[weightName] = w => w + BoneMath.DeltaWeight(block.to(ScalarType.Float32).repeat(1, outF / m), inF);
            }
            else if (block.ndim == 2)
            {
                if (block.shape[1] != outF) throw ShapeError(key, block.shape, weightName, shape, $"Bone blocks must be [r, {outF}]");
                updates[weightName] = w => w + BoneMath.DeltaWeight(block.to(ScalarType.Float32), inF);
            }
            else if (block.ndim == 3)
            {
                long r = block.shape[2];
                if (r == 0 || block.shape[1] != r || outF % r != 0 || inF % r != 0)
                    throw new InvalidDataException($"{adapterFile}: Bat block '{key}' [{string.Join(", ", block.shape)}] does not fit '{weightName}' [{outF}, {inF}]: the weight must be fully divisible into [r, r] blocks.");
                if (block.shape[0] != outF / r) throw ShapeError(key, block.shape, weightName, shape, $"Bat blocks must be [{outF / r}, {r}, {r}]");
                updates[weightName] = w => w + BatMath.DeltaWeight(w, block.to(ScalarType.Float32), BatGrouping.OutputBlock, BatProduct.Matrix);
            }
            else throw new InvalidDataException($"{adapterFile}: '{key}' has {block.ndim} dimensions; Bone blocks have 2 and Bat blocks 3.");
        }

        (string Name, long[] Shape) BaseWeight(string module, string suffix) => BaseTensorNames.Weight(checkpoint, module, $"{adapterFile}: '{AdapterModel.PeftKeyPrefix}{module}.{suffix}'");

        string? ResolveBase(string name) => BaseTensorNames.Resolve(checkpoint, name);

        InvalidDataException ShapeError(string key, long[] got, string baseName, long[] baseShape, string rule) =>
            new($"{adapterFile}: '{key}' has shape [{string.Join(", ", got)}] but '{baseName}' is [{string.Join(", ", baseShape)}]; {rule}.");
    }

    private static void WriteOutput(string modelDirectory, SafetensorsCheckpoint checkpoint, Plan plan, string outDir, bool safe)
    {
        var weightFiles = new HashSet<string>(checkpoint.ShardFiles, StringComparer.Ordinal);
        if (checkpoint.IndexJsonPath is not null) weightFiles.Add(Path.GetFileName(checkpoint.IndexJsonPath));
        foreach (string file in Directory.EnumerateFiles(modelDirectory))
            if (!weightFiles.Contains(Path.GetFileName(file))) File.Copy(file, Path.Combine(outDir, Path.GetFileName(file)));

        var weightMap = new Dictionary<string, string>();
        long totalSize = 0;
        for (int s = 0; s < checkpoint.ShardFiles.Count; s++)
        {
            string shard = checkpoint.ShardFiles[s];
            using var scope = NewDisposeScope();
            var output = new List<KeyValuePair<string, Tensor>>();
            foreach (string name in checkpoint.Names.Where(n => checkpoint.ShardOf(n) == shard).Order(StringComparer.Ordinal))
                output.Add(new(name, Transform(name, checkpoint.Load(name))));
            if (s == checkpoint.ShardFiles.Count - 1)
                foreach (string name in plan.Added) output.Add(new(name, plan.Replacements[name]));
            foreach (var (name, t) in output)
            {
                weightMap[name] = shard;
                totalSize += t.numel() * t.element_size();
            }
            SafetensorsWriter.Write(Path.Combine(outDir, shard), output, new Dictionary<string, string> { ["format"] = "pt" });
        }
        if (checkpoint.IndexJsonPath is not null)
            SafetensorsCheckpoint.WriteIndex(Path.Combine(outDir, Path.GetFileName(checkpoint.IndexJsonPath)), weightMap, totalSize);

        Tensor Transform(string name, Tensor original)
        {
            if (plan.Replacements.TryGetValue(name, out Tensor? replacement)) return replacement.to(original.dtype);
            if (!plan.Updates.TryGetValue(name, out Update? update)) return original;
            Tensor merged = update(original.to(ScalarType.Float32));
            if (safe && !isfinite(merged).all().item<bool>())
                throw new InvalidDataException($"merging into '{name}' produced NaN or infinite values; the adapter seems to be broken.");
            return merged.to(original.dtype);
        }
    }
}
