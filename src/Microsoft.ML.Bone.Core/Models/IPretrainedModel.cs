using Microsoft.ML.Bone.Nn;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Models;

/// <summary>What every model loaded from a checkpoint offers the adapters, the training loop and the exporters.</summary>
public interface IPretrainedModel : IDisposable
{
    /// <summary>The module (for adapters, modes, parameters and devices).</summary>
    nn.Module Module { get; }

    /// <summary>config.json's <c>model_type</c> (e.g. <c>llama</c>, <c>qwen2</c>, <c>roberta</c>).</summary>
    string ModelType { get; }

    /// <summary>PEFT module names of every projection an adapter usually targets in this architecture.</summary>
    IReadOnlyList<string> DefaultTargetModules { get; }

    /// <summary>Token ids must be below this.</summary>
    int VocabSize { get; }

    /// <summary>The longest sequence (in tokens) the model's positions support.</summary>
    int MaxSequenceLength { get; }

    /// <summary>Recompute each layer in the backward pass instead of keeping its intermediates (training memory).</summary>
    bool GradientCheckpointing { get; set; }

    /// <summary>Fused or eager attention.</summary>
    AttentionImplementation Attention { get; set; }

    /// <summary>The configuration in Hugging Face's <c>config.json</c> format.</summary>
    string ConfigJson();

    /// <summary>
    /// Writes <c>config.json</c> and <c>model.safetensors</c> (HF names, adapters excluded) to <paramref name="directory"/>;
    /// <paramref name="transform"/> supplies saved values tensor by tensor (e.g. merged weights, without changing the model).
    /// </summary>
    void SaveConfigAndWeights(string directory, IO.WeightTransform? transform = null);
}

/// <summary>Per-sequence state that generation carries from one step to the next (a key/value cache, a recurrent state).</summary>
public interface IGenerationCache : IDisposable
{
    /// <summary>Tokens consumed so far.</summary>
    long Length { get; }

    /// <summary>Keeps only the batch rows in <paramref name="rows"/> (int64 indices), e.g. when finished sequences leave a batch.</summary>
    void Select(Tensor rows);
}

/// <summary>A decoder that predicts the next token.</summary>
public interface ICausalLanguageModel : IPretrainedModel
{
    /// <summary>Ids that end a sequence.</summary>
    IReadOnlyList<int> EosTokenIds { get; }

    /// <summary>The id that starts a sequence, or null when the model uses none.</summary>
    int? BosTokenId { get; }

    /// <summary>
    /// Logits [B, T', V] in float32 or the model's dtype, for ids [B, T]. <paramref name="attentionMask"/>
    /// [B, past + T] marks real tokens (1) and padding (0); <paramref name="positionIds"/> [B, T] default to
    /// past … past + T − 1; <paramref name="cache"/> (from <see cref="NewCache"/>) carries state between calls.
    /// <paramref name="logitsToKeep"/> &gt; 0 computes logits for the last that many positions only (T' = it), as
    /// generation needs; 0 keeps all (T' = T).
    /// </summary>
    Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, IGenerationCache? cache = null, int logitsToKeep = 0);

    /// <summary>An empty generation cache for this model.</summary>
    IGenerationCache NewCache();
}

/// <summary>An encoder with a head that maps a sequence to one row of logits (classes, or one value for regression).</summary>
public interface ISequenceClassifier : IPretrainedModel
{
    /// <summary>Number of outputs: classes, or 1 for regression.</summary>
    int NumLabels { get; }

    /// <summary>Logits [B, NumLabels] for ids [B, T] (int64) with attention mask [B, T] (1 = token, 0 = padding).</summary>
    Tensor Logits(Tensor inputIds, Tensor attentionMask);

    /// <summary>Writes the model with <paramref name="labelNames"/> as config.json's <c>id2label</c>; see <see cref="IPretrainedModel.SaveConfigAndWeights"/>.</summary>
    void SaveConfigAndWeights(string directory, IReadOnlyList<string>? labelNames, IO.WeightTransform? transform = null);
}

/// <summary>How a checkpoint is loaded.</summary>
public sealed record ModelLoadOptions
{
    /// <summary>Dtype of the weights; null keeps the checkpoint's own. Default float32 (what CPUs compute fastest).</summary>
    public ScalarType? DType { get; init; } = ScalarType.Float32;

    /// <summary>Device of the weights; null means the CPU.</summary>
    public Device? Device { get; init; }

    /// <summary>Draws the initial values of anything the checkpoint lacks (a new classification head); null uses torch's global generator.</summary>
    public Generator? Random { get; init; }

    /// <summary>When set, receives the hash of every file and tensor read (the base model's identity).</summary>
    public IO.WeightFingerprint? Fingerprint { get; init; }

    /// <summary>Float32 on the CPU.</summary>
    public static ModelLoadOptions Default { get; } = new();
}
