using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Nn;

/// <summary>
/// Random initial values drawn from a given generator (so two trainings in one process never share torch's global
/// one), or from the global generator when none is given. Values are drawn in float32 on the CPU and copied, so a
/// seed gives the same values on every device and dtype.
/// </summary>
public static class Initialize
{
    /// <summary>N(0, <paramref name="std"/>).</summary>
    public static void Normal(Tensor target, double std, Generator? random)
    {
        using var noGrad = no_grad();
        if (random is null) { nn.init.normal_(target, 0, std); return; }
        using Tensor values = randn(target.shape, dtype: ScalarType.Float32, generator: random).mul_(std);
        target.copy_(values);
    }

    /// <summary>U(−b, b).</summary>
    public static void Uniform(Tensor target, double bound, Generator? random)
    {
        using var noGrad = no_grad();
        if (random is null) { nn.init.uniform_(target, -bound, bound); return; }
        using Tensor values = rand(target.shape, dtype: ScalarType.Float32, generator: random).mul_(2 * bound).sub_(bound);
        target.copy_(values);
    }

    /// <summary>PyTorch's default for linear weights, Kaiming-uniform with a = √5: U(−1/√fan_in, 1/√fan_in).</summary>
    public static void KaimingUniform(Tensor target, Generator? random)
    {
        long fanIn = target.ndim < 2 ? target.numel() : target.numel() / target.shape[0];
        Uniform(target, fanIn > 0 ? 1 / Math.Sqrt(fanIn) : 0, random);
    }
}
