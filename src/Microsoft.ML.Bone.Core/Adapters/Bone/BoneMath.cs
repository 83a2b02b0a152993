using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Adapters.Bone;

/// <summary>
/// Bone's update in closed form. The input is split into ceil(in/r) consecutive chunks of r features (the last one
/// zero-padded) which share one block: ΔW[o, k] = bone[k mod r, o].
/// </summary>
public static class BoneMath
{
    /// <summary>Sum of the r-wide chunks of the last dimension of <paramref name="x"/> (zero-padded), shape [..., r].</summary>
    public static Tensor ChunkSum(Tensor x, long r)
    {
        long inFeatures = x.shape[^1];
        long padding = (r - inFeatures % r) % r;
        if (padding > 0) x = nn.functional.pad(x, [0, padding]);
        long[] shape = [.. x.shape[..^1], (inFeatures + padding) / r, r];
        return x.reshape(shape).sum(-2);
    }

    /// <summary>The adapter's contribution to the output: ChunkSum(x) · bone, without forming ΔW.</summary>
    public static Tensor Forward(Tensor x, Tensor bone) => ChunkSum(x, bone.shape[0]).matmul(bone);

    /// <summary>ΔW = boneᵀ tiled across the input columns, shape [out, inFeatures].</summary>
    public static Tensor DeltaWeight(Tensor bone, long inFeatures)
    {
        long r = bone.shape[0];
        long chunks = (inFeatures + r - 1) / r;
        return bone.t().repeat(1, chunks).narrow(1, 0, inFeatures);
    }

    /// <summary>
    /// The exact LoRA form of a Bone block: ΔW[o, k] = bone[k mod r, o] = Σ_c B[o, c]·A[c, k] with the one-hot
    /// A[c, k] = 1 iff k mod r = c ([r, inFeatures]; the padded tail of the last chunk simply has no columns) and
    /// B = boneᵀ ([out, r]). With LoRA's scale 1 (alpha = r) the two adapters compute the same function.
    /// </summary>
    public static (Tensor A, Tensor B) LoraFactors(Tensor bone, long inFeatures)
    {
        long r = bone.shape[0];
        using var scope = NewDisposeScope();
        Tensor columns = arange(inFeatures, dtype: ScalarType.Int64, device: bone.device).remainder(r);
        Tensor a = columns.unsqueeze(0).eq(arange(r, dtype: ScalarType.Int64, device: bone.device).unsqueeze(1)).to(bone.dtype);
        return (a.MoveToOuterDisposeScope(), bone.t().contiguous().MoveToOuterDisposeScope());
    }
}
