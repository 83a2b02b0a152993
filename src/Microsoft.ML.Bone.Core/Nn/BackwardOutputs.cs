using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Nn;

/// <summary>
/// The gradients a custom autograd function's backward returns must outlive that call (libtorch reads them after it
/// returns), so they cannot be disposed there; moved to the caller's dispose scope they would live until the end of
/// the training step: one input-sized gradient per call, for every layer. Instead each backward hands its results
/// here, and the next backward on the thread (by then libtorch holds its own references) disposes the previous ones.
/// </summary>
internal static class BackwardOutputs
{
    [ThreadStatic] private static List<Tensor>? _handedOver;

    /// <summary>
    /// Disposes what the previous backward on this thread returned: first in every backward, and after a
    /// <c>backward()</c> call returns (the training loop does).
    /// </summary>
    public static void ReleasePrevious()
    {
        if (_handedOver is not { Count: > 0 } previous) return;
        foreach (Tensor t in previous) t.Dispose();
        previous.Clear();
    }

    /// <summary><paramref name="gradients"/>, taken out of every dispose scope and released by the next backward.</summary>
    public static List<Tensor> HandOver(List<Tensor> gradients)
    {
        _handedOver ??= [];
        foreach (Tensor? g in gradients)
            if (g is not null)
            {
                g.DetachFromDisposeScope();
                _handedOver.Add(g);
            }
        return gradients;
    }
}
