using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Nn;

/// <summary>
/// libtorch's intra-op thread count, set deliberately rather than left to whatever the native default picks: training,
/// scoring and generation call <see cref="Ensure"/> with the count their options give (0 = one per logical core).
/// </summary>
public static class TorchThreads
{
    /// <summary>The count <paramref name="requested"/> resolves to: itself when positive, otherwise <see cref="Environment.ProcessorCount"/>.</summary>
    public static int Resolve(int requested) => requested > 0 ? requested : Environment.ProcessorCount;

    /// <summary>Sets the process's intra-op thread count to <see cref="Resolve"/>(<paramref name="requested"/>) when it differs.</summary>
    public static void Ensure(int requested)
    {
        int threads = Resolve(requested);
        if (get_num_threads() != threads) set_num_threads(threads);
    }
}
