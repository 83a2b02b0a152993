using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Adapters.Bone;

/// <summary>
/// Bat's update in closed form. W is cut into r×r blocks W_ij (i: output block, j: input block) and each gets
/// ΔW_ij = W_ij·B + B (or W_ij ⊙ B + B), where B is B_i (output grouping, PEFT) or B_j (input grouping, RWKV-PEFT).
/// </summary>
public static class BatMath
{
    /// <summary>Shape of the trainable tensor for an [out, in] weight.</summary>
    public static long[] BlockShape(long outFeatures, long inFeatures, long r, BatGrouping grouping) =>
        [grouping == BatGrouping.OutputBlock ? outFeatures / r : inFeatures / r, r, r];

    /// <summary>Throws unless r divides both dimensions; <paramref name="where"/> names the layer or tensor.</summary>
    public static void CheckDivisible(long outFeatures, long inFeatures, long r, string where)
    {
        if (r <= 0 || inFeatures % r != 0 || outFeatures % r != 0)
            throw new ArgumentException($"Bat on '{where}': the weight [{outFeatures}, {inFeatures}] must be fully divisible into [r, r] blocks, but r = {r}.");
    }

    /// <summary>
    /// W' = W + ΔW(W, B), float32. For PEFT's layout (output grouping, matrix product) W' = W_blk·(I + B_i) + B_i is
    /// one batched product over W viewed as [out/r, in, r], which is W's own memory order, so no block of W is copied
    /// and W' is the only [out, in] tensor made; other layouts go through <see cref="DeltaWeight"/>.
    /// </summary>
    public static Tensor MergedWeight(Tensor weight, Tensor blocks, BatGrouping grouping, BatProduct product)
    {
        if (grouping != BatGrouping.OutputBlock || product != BatProduct.Matrix) return weight + DeltaWeight(weight, blocks, grouping, product);
        long outFeatures = weight.shape[0], inFeatures = weight.shape[1], r = blocks.shape[^1];
        Tensor identity = eye(r, dtype: blocks.dtype, device: blocks.device);
        Tensor merged = weight.reshape(outFeatures / r, inFeatures, r).bmm(blocks + identity);           // [out/r, (a, j), c]
        // + B_i on every block of row block i: [out/r, r(a), in/r(j), r(c)] + B[i, a, c].
        return merged.view(outFeatures / r, r, inFeatures / r, r).add_(blocks.unsqueeze(2)).view(outFeatures, inFeatures);
    }

    /// <summary>
    /// dL/dB for PEFT's layout given dL/dW' (<paramref name="gradMerged"/>, [out, in]): Σ_j W_ijᵀ·G_ij + Σ_j G_ij per
    /// row block, as one batched product, without building autograd's graph of <see cref="MergedWeight"/>.
    /// </summary>
    public static Tensor MergedWeightGradient(Tensor weight, Tensor gradMerged, long r)
    {
        long outFeatures = weight.shape[0], inFeatures = weight.shape[1];
        Tensor g = gradMerged.reshape(outFeatures / r, inFeatures, r);
        Tensor throughW = weight.reshape(outFeatures / r, inFeatures, r).transpose(1, 2).bmm(g);          // [out/r, r, r]
        return throughW + gradMerged.view(outFeatures / r, r, inFeatures / r, r).sum(2);
    }

    /// <summary>ΔW for weight W [out, in] and blocks B, float32 in and out.</summary>
    public static Tensor DeltaWeight(Tensor weight, Tensor blocks, BatGrouping grouping, BatProduct product)
    {
        Tensor w = ToBlocks(weight, blocks.shape[^1], grouping);
        Tensor delta = (product == BatProduct.Matrix ? w.matmul(blocks) : w * blocks) + blocks;
        return FromBlocks(delta, weight.shape[0], weight.shape[1], grouping);
    }

    /// <summary>W recovered from W' = W + ΔW(W): W_ij = (W'_ij − B)(I + B)⁻¹, or (W'_ij − B) ⊘ (1 + B) for Hadamard.</summary>
    public static Tensor UnmergedWeight(Tensor merged, Tensor blocks, BatGrouping grouping, BatProduct product)
    {
        long r = blocks.shape[^1];
        Tensor b = blocks.to(ScalarType.Float32);
        Tensor w = ToBlocks(merged.to(ScalarType.Float32), r, grouping) - b;
        Tensor restored = product == BatProduct.Matrix
            ? w.matmul(linalg.inv(eye(r, dtype: ScalarType.Float32, device: b.device) + b))
            : w / (b + 1);
        return FromBlocks(restored, merged.shape[0], merged.shape[1], grouping);
    }

    // Blocks are laid out so that B broadcasts over the leading dimension:
    //   output grouping: [in/r, out/r, r, r] against B [out/r, r, r]
    //   input grouping:  [out/r, in/r, r, r] against B [in/r, r, r]
    private static Tensor ToBlocks(Tensor weight, long r, BatGrouping grouping)
    {
        long outFeatures = weight.shape[0], inFeatures = weight.shape[1];
        Tensor blocks = weight.reshape(outFeatures / r, r, inFeatures / r, r);
        return grouping == BatGrouping.OutputBlock ? blocks.permute(2, 0, 1, 3) : blocks.permute(0, 2, 1, 3);
    }

    private static Tensor FromBlocks(Tensor blocks, long outFeatures, long inFeatures, BatGrouping grouping)
    {
        Tensor rows = grouping == BatGrouping.OutputBlock ? blocks.permute(1, 2, 0, 3) : blocks.permute(0, 2, 1, 3);
        return rows.reshape(outFeatures, inFeatures);
    }
}
