using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Nn;

/// <summary>
/// TorchSharp hands a <see cref="TorchSharp.Scalar"/>'s native handle to libtorch without keeping the Scalar alive, so one made
/// implicitly from a double can be finalized (its native value freed) while the call still reads it, whenever another
/// thread's allocation starts a collection at that moment: libtorch then sees a garbage scalar and fails
/// ("Expected false to be true" in <c>Scalar::toFloat</c>). These calls keep the Scalar alive until they return.
/// </summary>
internal static class ScalarArguments
{
    /// <summary><paramref name="tensor"/>.masked_fill(<paramref name="mask"/>, <paramref name="value"/>).</summary>
    public static Tensor MaskedFill(Tensor tensor, Tensor mask, double value)
    {
        using Scalar scalar = value;
        return tensor.masked_fill(mask, scalar);
    }
}
