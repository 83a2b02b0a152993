using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tasks;

/// <summary>A model that maps padded token ids to one row of logits per sequence.</summary>
public interface ISequenceClassifier
{
    /// <summary>The module (for adapters, modes and parameters).</summary>
    nn.Module Module { get; }

    /// <summary>Number of outputs: classes, or 1 for regression.</summary>
    int NumLabels { get; }

    /// <summary>Logits [B, NumLabels] for ids [B, T] (int64) with attention mask [B, T] (1 = token, 0 = padding).</summary>
    Tensor Logits(Tensor inputIds, Tensor attentionMask);
}

/// <summary>Turns one text or a text pair into model token ids.</summary>
public interface ISequenceTokenizer
{
    /// <summary>Id used to pad batches.</summary>
    int PadId { get; }

    /// <summary>Ids of <paramref name="first"/> (and <paramref name="second"/>) with special tokens, at most <paramref name="maxLength"/> long.</summary>
    int[] Encode(string first, string? second, int maxLength);
}
