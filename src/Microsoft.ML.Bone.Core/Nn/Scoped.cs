using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Nn;

/// <summary>
/// Runs a block in its own dispose scope and keeps only its result. A block's intermediates are managed tensors; left in
/// an outer scope they would hold their memory until the whole batch is done (autograd keeps what backward needs on its
/// own), so models run each layer this way.
/// </summary>
public static class Scoped
{
    /// <summary><paramref name="block"/>'s result, moved to the caller's scope; everything else it made is disposed.</summary>
    public static Tensor Run(Func<Tensor> block)
    {
        using var scope = NewDisposeScope();
        return block().MoveToOuterDisposeScope();
    }
}
