using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Microsoft.ML.Bone.FineTuning;

/// <summary>SHA-256 of prepared training data: what a checkpoint records as the data it was made from.</summary>
internal static class Digests
{
    public static string Of(IReadOnlyList<int[]> sequences, IReadOnlyList<float> targets)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Span<byte> length = stackalloc byte[4];
        foreach (int[] sequence in sequences)
        {
            BitConverter.TryWriteBytes(length, sequence.Length);
            hash.AppendData(length);
            hash.AppendData(MemoryMarshal.AsBytes(sequence.AsSpan()));
        }
        hash.AppendData(MemoryMarshal.AsBytes(targets.ToArray().AsSpan()));
        return Convert.ToHexString(hash.GetHashAndReset());
    }
}
