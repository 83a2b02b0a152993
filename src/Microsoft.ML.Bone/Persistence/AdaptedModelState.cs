using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Adapters.Lora;
using Microsoft.ML.Bone.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Persistence;

/// <summary>
/// What a saved model must keep beyond its frozen base: adapter tensors and modules-to-save (under PEFT keys),
/// and for PiSSA / OLoRA the initial factors that turn the base into its residual.
/// </summary>
internal static class AdaptedModelState
{
    private const string InitialPrefix = "initial.";

    /// <summary>Tensors to store for <paramref name="adapted"/> (live tensors, not copies).</summary>
    public static List<KeyValuePair<string, Tensor>> Collect(AdapterModel adapted)
    {
        var tensors = adapted.PeftStateDict().Select(p => new KeyValuePair<string, Tensor>(p.Key, p.Value.detach())).ToList();
        foreach (var (path, layer) in adapted.AdaptedLayers)
            if (adapted.AdapterOf(layer) is LoraLayer { InitialFactors: { } initial })
            {
                tensors.Add(new(InitialPrefix + path + ".lora_A.weight", initial.A));
                tensors.Add(new(InitialPrefix + path + ".lora_B.weight", initial.B));
            }
        return tensors;
    }

    /// <summary>
    /// Re-injects <paramref name="config"/> into a freshly loaded <paramref name="model"/> and restores the saved
    /// tensors. PiSSA / OLoRA are rebuilt from their saved initial factors (no decomposition is recomputed) unless
    /// <paramref name="baseIsResidual"/> says the loaded base already holds the residual.
    /// </summary>
    public static AdapterModel Restore(nn.Module model, AdapterConfig config, IReadOnlyDictionary<string, Tensor> tensors, bool baseIsResidual, string source)
    {
        AdapterConfig plain = config is LoraConfig { MutatesBaseWeights: true } mutating ? CopyWithDefaultInit(mutating) : config;
        AdapterModel adapted = AdapterModel.Inject(model, plain);
        adapted.LoadPeftStateDict(tensors.Where(p => !p.Key.StartsWith(InitialPrefix, StringComparison.Ordinal)).ToDictionary(), source);
        if (config is LoraConfig { MutatesBaseWeights: true })
        {
            foreach (var (path, layer) in adapted.AdaptedLayers)
            {
                string a = InitialPrefix + path + ".lora_A.weight", b = InitialPrefix + path + ".lora_B.weight";
                if (!tensors.TryGetValue(a, out Tensor? initialA) || !tensors.TryGetValue(b, out Tensor? initialB))
                    throw new InvalidDataException($"{source}: the initial factors of '{path}' are missing.");
                ((LoraLayer)adapted.AdapterOf(layer)).RestoreInitialFactors(layer, initialA, initialB, applyResidual: !baseIsResidual);
            }
        }
        return adapted;
    }

    /// <summary>
    /// Restores the adapter saved in zip entry <paramref name="entry"/> (described by PEFT config JSON), or returns null
    /// when the model had none (full fine-tuning).
    /// </summary>
    public static AdapterModel? RestoreFromZip(ZipEntryReader entries, string entry, nn.Module model, string? adapterConfigJson, bool baseIsResidual)
    {
        if (adapterConfigJson is null) return null;
        AdapterConfig config = PeftAdapterConfig.Parse(adapterConfigJson, "model zip").Config;
        Dictionary<string, Tensor> tensors = entries.ReadTensors(entry);
        try { return Restore(model, config, tensors, baseIsResidual, entry); }
        finally { foreach (Tensor t in tensors.Values) t.Dispose(); }
    }

    private static LoraConfig CopyWithDefaultInit(LoraConfig c)
    {
        var plain = (LoraConfig)c.Clone();
        plain.Init = LoraInit.Default;
        plain.PissaIterations = 0;
        return plain;
    }
}
