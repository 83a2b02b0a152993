using static TorchSharp.torch;

namespace Microsoft.ML.Bone.IO;

/// <summary>
/// One tensor of a <c>.pth</c> checkpoint: its name in the state dict, element type, shape, and where its elements
/// lie in the storage it shares with any views of the same data. Offsets and strides count elements, as in PyTorch.
/// </summary>
/// <param name="Name">Key in the state dict.</param>
/// <param name="DType">Element type (that of its storage).</param>
/// <param name="Shape">Sizes per dimension; empty for a 0-dimensional tensor.</param>
/// <param name="Strides">Elements to step per dimension, one per entry of <paramref name="Shape"/>.</param>
/// <param name="StorageOffset">Index of the tensor's first element in its storage.</param>
/// <param name="StorageKey">The storage's key; its bytes are the archive member <c>&lt;archive&gt;/data/&lt;key&gt;</c>.</param>
public sealed record PthEntry(string Name, ScalarType DType, long[] Shape, long[] Strides, long StorageOffset, string StorageKey)
{
    /// <summary>Number of elements.</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Size of the tensor's values in bytes once contiguous.</summary>
    public long ByteLength => ElementCount * PthFile.ElementSize(DType);

    /// <summary>
    /// True when the elements are stored in row-major order without gaps (dimensions of size 1 may have any stride),
    /// so they can be read as one run of bytes.
    /// </summary>
    public bool IsContiguous
    {
        get
        {
            if (ElementCount <= 1) return true;
            long expected = 1;
            for (int d = Shape.Length - 1; d >= 0; d--)
            {
                if (Shape[d] == 1) continue;
                if (Strides[d] != expected) return false;
                expected *= Shape[d];
            }
            return true;
        }
    }
}
