using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Nn;

/// <summary>
/// Where a model's parameters are created (dtype, device) and whether they get random initial values. A model about
/// to be filled from a checkpoint is built with <see cref="ForLoading"/>: its tensors are allocated once, directly in
/// the target dtype and on the target device, and never initialised (as transformers' <c>from_pretrained</c>).
/// </summary>
/// <param name="DType">Floating-point type of weights.</param>
/// <param name="Device">Device of every tensor; null means the CPU.</param>
/// <param name="Initialize">Fill new weights with their random initial values; false leaves the memory as allocated.</param>
public sealed record ParameterPlacement(ScalarType DType = ScalarType.Float32, Device? Device = null, bool Initialize = true)
{
    /// <summary>Float32 on the CPU, randomly initialised (a new model to train from scratch).</summary>
    public static ParameterPlacement Default { get; } = new();

    /// <summary>Uninitialised tensors in <paramref name="dtype"/> on <paramref name="device"/>, to be overwritten by a checkpoint.</summary>
    public static ParameterPlacement ForLoading(ScalarType dtype, Device? device = null) => new(dtype, device, false);

    /// <summary>Tensors with shapes and no storage (the meta device): checks a configuration against a checkpoint for free.</summary>
    public static ParameterPlacement ShapesOnly(ScalarType dtype = ScalarType.Float32) => new(dtype, META, false);

    /// <summary>The device tensors go to.</summary>
    public Device TargetDevice => Device ?? CPU;

    /// <summary>A new tensor of <paramref name="shape"/> in this placement's dtype and device, contents unspecified.</summary>
    public Tensor Empty(params long[] shape) => empty(shape, dtype: DType, device: TargetDevice);
}
