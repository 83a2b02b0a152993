using System.Security.Cryptography;
using System.Text;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.IO;

/// <summary>
/// The content identity of the files a model was built from: per file, a SHA-256 over the name, dtype, shape and bytes
/// of every tensor read from it (or over the whole file for files read as such, e.g. <c>config.json</c>). Tensors are
/// hashed while they are loaded, from the bytes already in memory, in 64 MiB pieces on every core, so establishing a
/// base model's identity costs hashing time (about a second per 2 GB per core) and no extra reading.
/// </summary>
public sealed class WeightFingerprint
{
    private const long Piece = 64L << 20;
    private readonly Dictionary<string, SortedDictionary<string, byte[]>> _files = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    /// <summary>Records tensor <paramref name="entry"/> of <paramref name="file"/> whose bytes are in <paramref name="data"/> (contiguous, CPU).</summary>
    public unsafe void AddTensor(string file, SafetensorsEntry entry, Tensor data)
    {
        byte[] content = entry.ByteLength == 0 ? SHA256.HashData([]) : Digest((IntPtr)TensorMemory.Pointer(data), entry.ByteLength);
        string description = $"{entry.Name}\n{entry.DType}\n{string.Join(',', entry.Shape)}\n";
        Add(file, entry.Name, SHA256.HashData([.. Encoding.UTF8.GetBytes(description), .. content]));
    }

    /// <summary>Records a whole file's bytes under its file name (small files such as <c>config.json</c>).</summary>
    public void AddFile(string path) => Add(Path.GetFileName(path), "", SHA256.HashData(InputFile.ReadAllBytes(path)));

    /// <summary>Records <paramref name="bytes"/> as part <paramref name="part"/> of <paramref name="file"/> (a file read piece by piece).</summary>
    public unsafe void AddBytes(string file, string part, ReadOnlySpan<byte> bytes)
    {
        fixed (byte* p = bytes) AddMemory(file, part, (IntPtr)p, bytes.Length);
    }

    /// <summary>Records <paramref name="length"/> bytes at <paramref name="start"/> (any size) as part <paramref name="part"/> of <paramref name="file"/>.</summary>
    internal void AddMemory(string file, string part, IntPtr start, long length) => Add(file, part, length == 0 ? SHA256.HashData([]) : Digest(start, length));

    /// <summary>Lower-case hex SHA-256 per file name, over its parts in name order.</summary>
    public IReadOnlyDictionary<string, string> Digests()
    {
        lock (_lock)
        {
            return _files.ToDictionary(f => f.Key, f =>
            {
                using var all = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                foreach (var (part, digest) in f.Value)
                {
                    all.AppendData(Encoding.UTF8.GetBytes(part + "\n"));
                    all.AppendData(digest);
                }
                return Convert.ToHexStringLower(all.GetHashAndReset());
            }, StringComparer.Ordinal);
        }
    }

    private void Add(string file, string part, byte[] digest)
    {
        lock (_lock)
        {
            if (!_files.TryGetValue(file, out var parts)) _files[file] = parts = new SortedDictionary<string, byte[]>(StringComparer.Ordinal);
            parts[part] = digest;
        }
    }

    // SHA-256 of the SHA-256s of consecutive 64 MiB pieces (one piece: its plain SHA-256), pieces hashed in parallel.
    private static unsafe byte[] Digest(IntPtr start, long length)
    {
        long pieces = (length + Piece - 1) / Piece;
        if (pieces <= 1) return SHA256.HashData(new ReadOnlySpan<byte>((byte*)start, (int)length));
        var digests = new byte[pieces][];
        Parallel.For(0, pieces, i =>
        {
            long offset = i * Piece;
            digests[i] = SHA256.HashData(new ReadOnlySpan<byte>((byte*)start + offset, (int)Math.Min(Piece, length - offset)));
        });
        return SHA256.HashData(digests.SelectMany(d => d).ToArray());
    }
}
