using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Adapters.Bone;
using Microsoft.ML.Bone.Adapters.Lora;

namespace Microsoft.ML.Bone.FineTuning;

/// <summary>Builds the adapter configuration that <see cref="FineTuningOptions"/> describe.</summary>
internal static class AdapterConfigFactory
{
    /// <summary>The adapter config, or null for full fine-tuning.</summary>
    public static AdapterConfig? Create(FineTuningOptions options, IReadOnlyList<string> defaultTargets, IReadOnlyList<string> modulesToSave)
    {
        string[] targets = options.TargetModules is { Length: > 0 } t ? t : [.. defaultTargets];
        int rank = options.EffectiveRank;
        AdapterConfig? config = options.Adapter switch
        {
            AdapterKind.Bone => new BoneConfig { R = rank, Dropout = options.AdapterDropout },
            AdapterKind.MissMini => new BoneConfig { R = rank, Variant = BoneVariant.Mini, MiniR = options.MiniR > 0 ? options.MiniR : 1, Dropout = options.AdapterDropout },
            AdapterKind.Bat => new BoneConfig { R = rank, Variant = BoneVariant.Bat, GradientCheckpointing = options.GradientCheckpointing },
            AdapterKind.Lora => Lora(options, LoraInit.Default),
            AdapterKind.PiSSA => Lora(options, LoraInit.PiSSA),
            AdapterKind.OLoRA => Lora(options, LoraInit.OLoRA),
            AdapterKind.FullFineTuning => null,
            AdapterKind.StateTuning => new Adapters.StateTuning.StateTuningConfig { ModulesToSave = [] },
            _ => throw new ArgumentOutOfRangeException(nameof(options.Adapter), options.Adapter, "unknown adapter"),
        };
        if (config is null) return null;
        if (config is Adapters.StateTuning.StateTuningConfig) return config;   // trains the initial state, nothing else
        config.TargetModules = targets;
        config.ModulesToSave = modulesToSave;
        return config;
    }

    private static LoraConfig Lora(FineTuningOptions options, LoraInit init) => new()
    {
        R = options.EffectiveRank,
        Alpha = options.EffectiveAlpha,
        UseRsLora = options.UseRsLora,
        Init = init,
        Dropout = options.AdapterDropout,
        PissaIterations = init == LoraInit.PiSSA ? options.PissaIterations : 0,
    };
}
