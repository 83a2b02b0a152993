namespace Microsoft.ML.Bone.Training;

/// <summary>
/// Batches of similar length, so padding to the batch maximum wastes little: examples are shuffled, sorted by
/// length within windows of many batches, cut into batches, and the batches shuffled again. Deterministic for a seed.
/// </summary>
public static class LengthBucketedBatches
{
    /// <summary>How many batches share one sorting window.</summary>
    public const int WindowBatches = 50;

    /// <summary>Example indices grouped into batches for one epoch.</summary>
    public static List<int[]> Plan(IReadOnlyList<int> lengths, int batchSize, Random random)
    {
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "Batch size must be positive.");
        int[] order = Enumerable.Range(0, lengths.Count).ToArray();
        random.Shuffle(order);
        var batches = new List<int[]>();
        int window = batchSize * WindowBatches;
        for (int start = 0; start < order.Length; start += window)
        {
            int[] sorted = order.Skip(start).Take(window).OrderBy(i => lengths[i]).ToArray();
            for (int b = 0; b < sorted.Length; b += batchSize) batches.Add(sorted[b..Math.Min(b + batchSize, sorted.Length)]);
        }
        var shuffled = batches.ToArray();
        random.Shuffle(shuffled);
        return [.. shuffled];
    }
}
