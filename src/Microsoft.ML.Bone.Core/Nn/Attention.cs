using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Nn;

/// <summary>How attention scores are computed (transformers' <c>attn_implementation</c>).</summary>
public enum AttentionImplementation
{
    /// <summary>libtorch's fused <c>scaled_dot_product_attention</c> (default): no [T, T] score tensor kept for backward on CPU's flash kernel.</summary>
    Sdpa,

    /// <summary>Scores, softmax and weighted sum written out step by step: the readable reference.</summary>
    Eager,
}

/// <summary>softmax(q·kᵀ/√d + mask)·v in both implementations; q [B, H, T, D], k and v [B, H, S, D].</summary>
public static class Attention
{
    /// <summary>
    /// Attention output [B, H, T, D]. <paramref name="additiveMask"/> ([B or 1, 1, T, S], 0 where allowed and the dtype's
    /// most negative value where not) or, without a mask, <paramref name="causal"/> (query i sees keys ≤ i, T = S)
    /// decides what each query sees. <paramref name="dropout"/> applies to the probabilities (eager only: its masks
    /// come from a replayable stream).
    /// </summary>
    public static Tensor Compute(AttentionImplementation implementation, Tensor q, Tensor k, Tensor v, Tensor? additiveMask, bool causal, Dropout? dropout = null)
    {
        bool dropping = dropout is { training: true, P: > 0 };
        if (implementation == AttentionImplementation.Sdpa && !dropping)
            return nn.functional.scaled_dot_product_attention(q, k, v, additiveMask, 0, is_casual: additiveMask is null && causal);
        return Eager(q, k, v, additiveMask ?? (causal ? CausalMask(q.shape[2], k.shape[2], q.dtype, q.device) : null), dropout);
    }

    /// <summary>The reference: scores in float32, softmax, optional dropout, weighted sum in the input dtype.</summary>
    public static Tensor Eager(Tensor q, Tensor k, Tensor v, Tensor? additiveMask, Dropout? dropout = null)
    {
        Tensor scores = q.matmul(k.transpose(-1, -2)) * (1 / Math.Sqrt(q.shape[^1]));   // [B, H, T, S]
        if (additiveMask is not null) scores = scores + additiveMask;
        Tensor probabilities = scores.to(ScalarType.Float32).softmax(-1).to(q.dtype);
        if (dropout is not null) probabilities = dropout.call(probabilities);
        return probabilities.matmul(v);
    }

    /// <summary>Additive causal mask [1, 1, T, S] for T queries at the end of S keys.</summary>
    public static Tensor CausalMask(long queries, long keys, ScalarType dtype, Device device)
    {
        Tensor query = arange(keys - queries, keys, device: device).unsqueeze(1);
        Tensor key = arange(0, keys, device: device).unsqueeze(0);
        return ScalarArguments.MaskedFill(zeros([1, 1, queries, keys], dtype: dtype, device: device), key.gt(query), torch.finfo(dtype).min);
    }
}
