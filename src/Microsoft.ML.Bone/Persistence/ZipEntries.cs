using System.Security.Cryptography;
using Microsoft.ML.Bone.IO;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Persistence;

/// <summary>
/// Writes a model's entries into its ML.NET zip directory, recording each entry's size and SHA-256 for the saved-model
/// record. System.IO.Compression checks no CRC when it reads, so these digests are what catch a corrupted entry.
/// </summary>
internal sealed class ZipEntryWriter(ModelSaveContext ctx)
{
    private readonly Dictionary<string, FileIdentity> _written = new(StringComparer.Ordinal);

    /// <summary>Size and digest of every entry written so far.</summary>
    public Dictionary<string, FileIdentity> Written => new(_written, StringComparer.Ordinal);

    public void Write(string name, Action<Stream> write) => MlNetInternals.SaveBinaryStream(ctx, name, w =>
    {
        w.Flush();
        using var hashing = new HashingStream(w.BaseStream);
        write(hashing);
        _written[name] = new FileIdentity(hashing.Length, hashing.Digest());
    });

    public void WriteBytes(string name, byte[] bytes) => Write(name, s => s.Write(bytes));

    public void WriteTensors(string name, IEnumerable<KeyValuePair<string, Tensor>> tensors) => Write(name, s => SafetensorsWriter.Write(s, tensors));
}

/// <summary>
/// Reads entries written by <see cref="ZipEntryWriter"/>, refusing any whose size or digest differs from the record.
/// Decompression is bounded before ML.NET extracts an entry: its declared size must be the recorded one, and no
/// more than deflate's maximum ratio (about 1032:1) of its compressed size.
/// </summary>
internal sealed class ZipEntryReader(object ctx, IReadOnlyDictionary<string, FileIdentity> recorded)
{
    /// <summary>Whether the record lists <paramref name="name"/>.</summary>
    public bool Has(string name) => recorded.ContainsKey(name);

    public byte[] ReadBytes(string name)
    {
        FileIdentity expected = Check(name);
        if (expected.Size > Array.MaxLength) throw Corrupt(name, $"it is {expected.Size} bytes, too large for this kind of entry");
        using var copy = new MemoryStream((int)expected.Size);
        Copy(name, expected, copy);
        return copy.ToArray();
    }

    public void CopyToFile(string name, string path)
    {
        FileIdentity expected = Check(name);
        using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
        Copy(name, expected, file);
    }

    /// <summary>The entry's tensors, loaded to CPU.</summary>
    public Dictionary<string, Tensor> ReadTensors(string name)
    {
        string temp = TempPaths.NewScratchPath("zip-tensors-", ".safetensors");
        try
        {
            CopyToFile(name, temp);
            using var file = SafetensorsFile.Open(temp);
            var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
            try
            {
                foreach (var entry in file.Entries) tensors[entry.Name] = file.Load(entry.Name);
            }
            catch
            {
                foreach (Tensor t in tensors.Values) t.Dispose();
                throw;
            }
            return tensors;
        }
        finally { File.Delete(temp); }
    }

    private FileIdentity Check(string name)
    {
        if (!recorded.TryGetValue(name, out FileIdentity? expected))
            throw new InvalidDataException($"model zip: the model's record lists no entry '{name}'.");
        if (MlNetInternals.FindEntry(ctx, name) is not { } entry)
            throw new InvalidDataException($"model zip: the entry '{name}' is missing.");
        if (entry.Length != expected.Size)
            throw Corrupt(name, $"it declares {entry.Length} bytes, the record says {expected.Size}");
        if (!ModelZipBounds.Plausible(entry.Length, entry.CompressedLength))
            throw Corrupt(name, $"{entry.CompressedLength} compressed bytes cannot hold the {entry.Length} it declares");
        return expected;
    }

    private void Copy(string name, FileIdentity expected, Stream destination)
    {
        long length = 0;
        string? digest = null;
        if (!MlNetInternals.TryLoadBinaryStream(ctx, name, r =>
            {
                using var hashing = new HashingStream(destination, leaveOpen: true);
                r.BaseStream.CopyTo(hashing);
                (length, digest) = (hashing.Length, hashing.Digest());
            }))
            throw new InvalidDataException($"model zip: the entry '{name}' is missing.");
        if (length != expected.Size || digest != expected.Sha256)
            throw Corrupt(name, $"its content (SHA-256 {digest}, {length} bytes) is not what was saved (SHA-256 {expected.Sha256}, {expected.Size} bytes)");
    }

    private static InvalidDataException Corrupt(string name, string why) =>
        new($"model zip: the entry '{name}' is corrupted: {why}. Restore the zip from a good copy, or train and save it again.");
}

/// <summary>Passes writes through to another stream, counting bytes and hashing them with SHA-256.</summary>
internal sealed class HashingStream(Stream inner, bool leaveOpen = true) : Stream
{
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private long _length;

    public override long Length => _length;
    public string Digest() => Convert.ToHexStringLower(_hash.GetCurrentHash());

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));
    public override void Write(ReadOnlySpan<byte> buffer)
    {
        _hash.AppendData(buffer);
        inner.Write(buffer);
        _length += buffer.Length;
    }
    public override void Flush() => inner.Flush();

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => true;
    public override long Position { get => _length; set => throw new NotSupportedException(); }
    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _hash.Dispose();
            if (!leaveOpen) inner.Dispose();
        }
        base.Dispose(disposing);
    }
}
