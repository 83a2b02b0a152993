using Microsoft.ML.Bone.Adapters.Lora;
using Microsoft.ML.Bone.Models;
using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Models.Rwkv6;
using Microsoft.ML.Bone.Nn;

namespace Microsoft.ML.Bone.Adapters;

/// <summary>
/// Trainable-parameter counts from shapes alone: the model is built on the meta device (no memory, no weights) and
/// the adapter injected into it, so the count is the adapter builder's own, for any size. The presets are the models
/// of the Bone paper's tables.
/// </summary>
public static class ParameterCounts
{
    /// <summary>Preset names: the paper's RWKV-6 World models and LLaMA-2-7B.</summary>
    public static IReadOnlyList<string> PresetNames => [.. Presets.Keys];

    private static readonly Dictionary<string, Func<IPretrainedModel>> Presets = new(StringComparer.OrdinalIgnoreCase)
    {
        ["rwkv6-1.6b"] = () => Rwkv6(24, 2048, 7168, 32, 64),
        ["rwkv6-3b"] = () => Rwkv6(32, 2560, 8960, 32, 64),
        ["rwkv6-7b"] = () => Rwkv6(32, 4096, 14336, 64, 128),
        ["llama2-7b"] = () => new LlamaForCausalLM(new LlamaConfig
        {
            VocabSize = 32000, HiddenSize = 4096, IntermediateSize = 11008, NumHiddenLayers = 32, NumAttentionHeads = 32, NumKeyValueHeads = 32, HeadDim = 128, MaxPositionEmbeddings = 4096,
        }, ParameterPlacement.ShapesOnly()),
    };

    /// <summary>A preset model on the meta device; errors list the presets.</summary>
    public static IPretrainedModel Preset(string name) =>
        Presets.TryGetValue(name, out var build) ? build() : throw new ArgumentException($"Unknown preset '{name}'; presets: {string.Join(", ", Presets.Keys)}.", nameof(name));

    /// <summary>
    /// Trainable and total parameters with <paramref name="config"/> injected into <paramref name="shapes"/> (a meta-device
    /// model, which is changed). PiSSA and OLoRA count as the LoRA they are (their initialisation needs real weights).
    /// </summary>
    public static AdapterParameterSummary Count(IPretrainedModel shapes, AdapterConfig config)
    {
        if (config is LoraConfig { MutatesBaseWeights: true } mutating)
        {
            var plain = (LoraConfig)mutating.Clone();
            plain.Init = LoraInit.Default;
            plain.PissaIterations = 0;
            config = plain;
        }
        return AdapterModel.Inject(shapes.Module, config).Summary();
    }

    private static Rwkv6ForCausalLM Rwkv6(int layers, int width, int ffn, int mixExtra, int decayExtra) => new(new Rwkv6Config
    {
        VocabSize = 65536, HiddenSize = width, NumHiddenLayers = layers, AttentionHiddenSize = width, HeadSize = 64, IntermediateSize = ffn,
        TimeMixExtraDim = mixExtra, TimeDecayExtraDim = decayExtra,
    }, ParameterPlacement.ShapesOnly());
}
