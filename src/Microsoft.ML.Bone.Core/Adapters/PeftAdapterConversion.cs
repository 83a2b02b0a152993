using Microsoft.ML.Bone.Adapters.Bone;
using Microsoft.ML.Bone.Adapters.Lora;
using Microsoft.ML.Bone.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Adapters;

/// <summary>The adapter file formats <see cref="PeftAdapterConversion"/> writes.</summary>
public enum PeftConversionTarget
{
    /// <summary><c>peft_type: "MISS"</c> (PEFT 0.17 and later).</summary>
    Miss,

    /// <summary><c>peft_type: "BONE"</c> (PEFT 0.14 to 0.18).</summary>
    Bone,

    /// <summary>An exactly equivalent <c>peft_type: "LORA"</c> adapter, for engines that serve only LoRA (vLLM, TGI, llama.cpp).</summary>
    Lora,
}

/// <summary>What a conversion wrote.</summary>
/// <param name="Layers">Adapted layers converted.</param>
/// <param name="Notes">Things the output leaves out or changes, for the user to read (e.g. a dropout BONE cannot store).</param>
public sealed record ConversionReport(int Layers, IReadOnlyList<string> Notes);

/// <summary>
/// Converts PEFT adapter folders between MISS, BONE and LORA without a model in memory. MISS ↔ BONE renames the
/// type and the <c>…_block</c> keys (as PEFT's <c>convert-bone-to-miss.py</c>). Bone and MiSS-mini → LoRA is exact:
/// Bone's ΔW[o, k] = block[k mod r, o] is the rank-r product of a one-hot A and B = blockᵀ (see
/// <see cref="BoneMath.LoraFactors"/>), so a LoRA-only server computes the same logits without merging. Bat's update
/// depends on the base weight and has full rank; it has no LoRA form.
/// </summary>
public static class PeftAdapterConversion
{
    /// <summary>
    /// Reads the adapter in <paramref name="adapterDirectory"/> and writes it to <paramref name="outputDirectory"/>
    /// (must not exist or be empty; assembled in a temporary folder and renamed into place) as <paramref name="target"/>.
    /// LoRA needs each targeted layer's input size, which the adapter file does not hold: pass the base checkpoint in
    /// <paramref name="modelDirectory"/> (only its tensor headers are read).
    /// </summary>
    public static ConversionReport Convert(string adapterDirectory, string outputDirectory, PeftConversionTarget target, string? modelDirectory = null)
    {
        if (!Enum.IsDefined(target)) throw new ArgumentOutOfRangeException(nameof(target), target, "not a conversion target");
        AtomicDirectory.CheckMissingOrEmpty(outputDirectory);
        var (adapter, tensors) = PeftAdapterDirectory.Read(adapterDirectory);
        string configPath = Path.Combine(adapterDirectory, PeftAdapterConfig.FileName);
        try
        {
            using var scope = NewDisposeScope();
            var notes = new List<string>();
            (string json, List<KeyValuePair<string, Tensor>> output, int layers) = target switch
            {
                PeftConversionTarget.Lora => ToLora(adapter, tensors, configPath, modelDirectory, notes),
                _ => ToBlockFormat(adapter, tensors, configPath, target == PeftConversionTarget.Bone ? PeftFormat.Bone : PeftFormat.Miss, notes),
            };
            WriteAtomically(outputDirectory, json, output);
            return new ConversionReport(layers, notes);
        }
        finally
        {
            foreach (Tensor t in tensors.Values) t.Dispose();
        }
    }

    private static (string, List<KeyValuePair<string, Tensor>>, int) ToBlockFormat(PeftAdapterConfig adapter, Dictionary<string, Tensor> tensors, string configPath, PeftFormat format, List<string> notes)
    {
        if (adapter.Config is not BoneConfig bone)
            throw new InvalidDataException($"{configPath}: a {adapter.Config.PeftType} adapter cannot become {format.ToString().ToUpperInvariant()}; only Bone-family (BONE / MISS) adapters change format this way.");
        if (format == PeftFormat.Bone)
        {
            if (bone.Variant == BoneVariant.Mini)
                throw new InvalidDataException($"{configPath}: MiSS-mini (init_weights \"mini\") has no BONE form; PEFT 0.14–0.18 do not know it. Keep MISS, or convert to LoRA.");
            if (bone.Dropout != 0)
            {
                notes.Add($"miss_dropout {bone.Dropout} is dropped: BONE has no dropout field (it only acts in training; outputs are unchanged).");
                bone = (BoneConfig)bone.Clone();
                bone.Dropout = 0;
            }
        }
        string suffix = PeftAdapterConfig.BlockSuffix(format);
        var output = tensors.Select(p => new KeyValuePair<string, Tensor>(
            p.Key.EndsWith(".miss_block", StringComparison.Ordinal) ? p.Key[..^"miss_block".Length] + suffix : p.Key, p.Value)).ToList();
        int layers = tensors.Keys.Count(k => k.EndsWith(".miss_block", StringComparison.Ordinal));
        return (new PeftAdapterConfig(bone, adapter.TaskType, adapter.BaseModelNameOrPath, format).ToJson(), output, layers);
    }

    private static (string, List<KeyValuePair<string, Tensor>>, int) ToLora(PeftAdapterConfig adapter, Dictionary<string, Tensor> tensors, string configPath, string? modelDirectory, List<string> notes)
    {
        if (adapter.Config is not BoneConfig bone)
            throw new InvalidDataException($"{configPath}: the adapter is already {adapter.Config.PeftType}; nothing to convert.");
        if (bone.Variant == BoneVariant.Bat)
            throw new InvalidDataException($"{configPath}: Bat (init_weights \"bat\") cannot become LoRA: its update W·B + B depends on the base weight and has full rank, so no rank-r LoRA reproduces it. Merge it into the base instead (`bone merge --model DIR --adapter DIR --out DIR`).");
        if (modelDirectory is null)
            throw new ArgumentException("Converting to LoRA needs the base model (--model DIR): LoRA's A is [r, in_features] and the adapter file does not record in_features.", nameof(modelDirectory));
        using var checkpoint = SafetensorsCheckpoint.Open(modelDirectory);

        var output = new List<KeyValuePair<string, Tensor>>();
        int layers = 0;
        foreach (var (key, block) in tensors.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            if (!key.EndsWith(".miss_block", StringComparison.Ordinal))
            {
                output.Add(new(key, block));   // modules to save travel unchanged
                continue;
            }
            string module = key[AdapterModel.PeftKeyPrefix.Length..^".miss_block".Length];
            var (weightName, shape) = BaseTensorNames.Weight(checkpoint, module, configPath);
            long outF = shape[0], inF = shape[1];
            if (block.ndim != 2 || block.shape[0] != bone.R)
                throw new InvalidDataException($"{configPath}: '{key}' is [{string.Join(", ", block.shape)}]; a Bone block is [r = {bone.R}, …].");
            Tensor full = block;
            if (bone.Variant == BoneVariant.Mini)
            {
                if (block.shape[1] != bone.MiniR || outF % bone.MiniR != 0)
                    throw new InvalidDataException($"{configPath}: MiSS-mini block '{key}' is [{string.Join(", ", block.shape)}] but '{weightName}' is [{outF}, {inF}]; it must be [r, mini_r = {bone.MiniR}] with mini_r dividing {outF}.");
                full = block.repeat(1, outF / bone.MiniR);
            }
            else if (block.shape[1] != outF)
                throw new InvalidDataException($"{configPath}: '{key}' is [{string.Join(", ", block.shape)}] but '{weightName}' is [{outF}, {inF}]; a Bone block is [r, {outF}].");
            var (a, b) = BoneMath.LoraFactors(full, inF);
            string prefix = AdapterModel.PeftKeyPrefix + module + ".";
            output.Add(new(prefix + "lora_A.weight", a));
            output.Add(new(prefix + "lora_B.weight", b));
            layers++;
        }
        // scale = alpha / r = 1: the product B·A is the Bone update itself.
        var lora = new LoraConfig { R = bone.R, Alpha = bone.R, Dropout = bone.Dropout };
        lora.CopyPlacementFrom(bone);
        if (bone.Dropout != 0) notes.Add($"miss_dropout {bone.Dropout} becomes lora_dropout {bone.Dropout} (both drop the adapter path's input).");
        return (new PeftAdapterConfig(lora, adapter.TaskType, adapter.BaseModelNameOrPath).ToJson(), output, layers);
    }

    private static void WriteAtomically(string outputDirectory, string json, List<KeyValuePair<string, Tensor>> tensors) =>
        AtomicDirectory.Write(outputDirectory, temp => PeftAdapterDirectory.WriteFiles(temp, json, tensors));
}
