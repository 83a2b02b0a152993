using System.Buffers.Binary;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace Microsoft.ML.Bone.IO;

/// <summary>One member of a ZIP archive as the central directory describes it.</summary>
/// <param name="Name">The member's path inside the archive.</param>
/// <param name="Method">Compression method (0 = stored).</param>
/// <param name="Size">Uncompressed size in bytes (equal to the stored size: only stored members are accepted).</param>
/// <param name="Crc32">CRC-32 of the member's bytes, as recorded.</param>
/// <param name="LocalHeaderOffset">Where the member's local header starts.</param>
internal sealed record ZipMember(string Name, int Method, long Size, uint Crc32, long LocalHeaderOffset);

/// <summary>
/// The central directory of a ZIP archive whose members are all STORED, as <c>torch.save</c> writes them. Only the
/// directory is read and checked here; member bytes stay in the file and are read by position. Nothing is ever
/// decompressed, so a compressed member is a format error rather than something to inflate. Zip64 records are
/// understood because checkpoints over 4 GiB are ordinary.
/// </summary>
internal sealed class ZipDirectory
{
    private const uint EndSignature = 0x06054b50;
    private const uint Zip64EndSignature = 0x06064b50;
    private const uint Zip64LocatorSignature = 0x07064b50;
    private const uint CentralSignature = 0x02014b50;
    private const uint LocalSignature = 0x04034b50;
    private const int EndLength = 22;
    private const int Zip64LocatorLength = 20;
    private const int Zip64EndLength = 56;
    private const int CentralLength = 46;
    private const int LocalLength = 30;
    private const int MaxCommentLength = 0xFFFF;

    /// <summary>
    /// The largest central directory accepted. Each member takes at least 46 bytes, so this allows over a million
    /// members (a checkpoint has a few thousand at most) while a hostile size cannot make us allocate much.
    /// </summary>
    public const long MaxCentralDirectoryLength = 64L << 20;

    private readonly string _path;
    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, ZipMember> _byName;

    private ZipDirectory(string path, SafeFileHandle handle, long fileLength, long centralStart, List<ZipMember> members)
    {
        _path = path;
        _handle = handle;
        FileLength = fileLength;
        CentralDirectoryStart = centralStart;
        Members = members;
        _byName = new Dictionary<string, ZipMember>(StringComparer.Ordinal);
        foreach (ZipMember m in members)
            if (!_byName.TryAdd(m.Name, m)) throw Error($"the archive holds two members named '{m.Name}'");
    }

    /// <summary>Length of the file when it was opened.</summary>
    public long FileLength { get; }

    /// <summary>Where the central directory starts; every member's bytes must end before it.</summary>
    public long CentralDirectoryStart { get; }

    /// <summary>Members in central-directory order.</summary>
    public IReadOnlyList<ZipMember> Members { get; }

    /// <summary>The member named <paramref name="name"/>, or null.</summary>
    public ZipMember? Find(string name) => _byName.GetValueOrDefault(name);

    /// <summary>Reads and checks the end records and the central directory of the archive open as <paramref name="handle"/>.</summary>
    public static ZipDirectory Read(string path, SafeFileHandle handle)
    {
        long fileLength = RandomAccess.GetLength(handle);
        var reader = new Reader(path, handle, fileLength);
        if (fileLength < EndLength) throw reader.Error($"file is {fileLength} bytes, too short to be a ZIP archive (a torch.save checkpoint)");

        // The end record sits at the very end, followed only by its comment; find the last signature whose comment
        // ends exactly at the end of the file, so a truncated or padded file is not mistaken for a whole one.
        int tailLength = (int)Math.Min(fileLength, EndLength + MaxCommentLength);
        byte[] tail = reader.Bytes(fileLength - tailLength, tailLength, "the end of the file");
        int end = -1;
        for (int i = tailLength - EndLength; i >= 0; i--)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(i)) != EndSignature) continue;
            if (i + EndLength + BinaryPrimitives.ReadUInt16LittleEndian(tail.AsSpan(i + 20)) != tailLength) continue;
            end = i;
            break;
        }
        if (end < 0)
        {
            Span<byte> head = stackalloc byte[2];
            reader.Read(head, 0, "the start of the file");
            if (head[0] == 0x80 && head[1] == 0x02)
                throw reader.Error("this is the legacy (before PyTorch 1.6) torch.save format, a bare pickle; only the ZIP format is read (load and save it again with a current PyTorch)");
            throw reader.Error("no ZIP end-of-central-directory record at the end of the file; it is not a torch.save checkpoint or it was truncated");
        }
        long endOffset = fileLength - tailLength + end;
        ReadOnlySpan<byte> record = tail.AsSpan(end, EndLength);
        uint disk = BinaryPrimitives.ReadUInt16LittleEndian(record[4..]);
        uint centralDisk = BinaryPrimitives.ReadUInt16LittleEndian(record[6..]);
        ulong diskCount = BinaryPrimitives.ReadUInt16LittleEndian(record[8..]);
        ulong count = BinaryPrimitives.ReadUInt16LittleEndian(record[10..]);
        ulong centralLength = BinaryPrimitives.ReadUInt32LittleEndian(record[12..]);
        ulong centralStart = BinaryPrimitives.ReadUInt32LittleEndian(record[16..]);
        long centralLimit = endOffset;

        // A zip64 locator immediately before the end record points at the zip64 end record, whose 64-bit values
        // replace the saturated 16- and 32-bit ones.
        bool saturated = count == 0xFFFF || diskCount == 0xFFFF || centralLength == 0xFFFFFFFF || centralStart == 0xFFFFFFFF;
        long locatorOffset = endOffset - Zip64LocatorLength;
        if (locatorOffset >= 0 && reader.UInt32(locatorOffset) == Zip64LocatorSignature)
        {
            byte[] locator = reader.Bytes(locatorOffset, Zip64LocatorLength, "the zip64 locator");
            ulong zip64End = BinaryPrimitives.ReadUInt64LittleEndian(locator.AsSpan(8));
            uint totalDisks = BinaryPrimitives.ReadUInt32LittleEndian(locator.AsSpan(16));
            if (totalDisks > 1) throw reader.Error($"the archive spans {totalDisks} disks; only single-file archives are read");
            if (locatorOffset < Zip64EndLength || zip64End > (ulong)(locatorOffset - Zip64EndLength))
                throw reader.Error($"the zip64 end record offset {zip64End} is outside the file (it must end by byte {locatorOffset})");
            byte[] z = reader.Bytes((long)zip64End, Zip64EndLength, "the zip64 end record");
            if (BinaryPrimitives.ReadUInt32LittleEndian(z) != Zip64EndSignature)
                throw reader.Error($"no zip64 end record at offset {zip64End}, where the zip64 locator points");
            disk = BinaryPrimitives.ReadUInt32LittleEndian(z.AsSpan(16));
            centralDisk = BinaryPrimitives.ReadUInt32LittleEndian(z.AsSpan(20));
            diskCount = BinaryPrimitives.ReadUInt64LittleEndian(z.AsSpan(24));
            count = BinaryPrimitives.ReadUInt64LittleEndian(z.AsSpan(32));
            centralLength = BinaryPrimitives.ReadUInt64LittleEndian(z.AsSpan(40));
            centralStart = BinaryPrimitives.ReadUInt64LittleEndian(z.AsSpan(48));
            centralLimit = (long)zip64End;
        }
        else if (saturated) throw reader.Error("the end record has zip64 placeholder values but there is no zip64 locator before it");

        if (disk != 0 || centralDisk != 0 || diskCount != count)
            throw reader.Error("the archive spans several disks; only single-file archives are read");
        if (centralStart > (ulong)centralLimit || centralLength > (ulong)centralLimit - centralStart)
            throw reader.Error($"the central directory (offset {centralStart}, {centralLength} bytes) goes past its end record at byte {centralLimit} (file length {fileLength})");
        if (centralLength > MaxCentralDirectoryLength)
            throw reader.Error($"the central directory is {centralLength} bytes, over the {MaxCentralDirectoryLength}-byte limit");
        if (count > centralLength / CentralLength)
            throw reader.Error($"the end record counts {count} members, more than a {centralLength}-byte central directory can hold");

        byte[] central = reader.Bytes((long)centralStart, (int)centralLength, "the central directory");
        var members = new List<ZipMember>((int)count);
        int at = 0;
        for (ulong n = 0; n < count; n++)
            members.Add(ReadCentral(reader, central, ref at, (long)centralStart));
        if (at != central.Length)
            throw reader.Error($"the central directory has {central.Length - at} bytes after its {count} members");
        return new ZipDirectory(path, handle, fileLength, (long)centralStart, members);
    }

    /// <summary>
    /// Where the bytes of <paramref name="member"/> start in the file, after checking its local header against the
    /// central directory and that its bytes end before the central directory.
    /// </summary>
    public long DataStart(ZipMember member)
    {
        var reader = new Reader(_path, _handle, FileLength);
        string where = $"member '{member.Name}'";
        if (member.LocalHeaderOffset > CentralDirectoryStart - LocalLength)
            throw Error($"{where} has its local header at offset {member.LocalHeaderOffset}, past the start of the central directory ({CentralDirectoryStart})");
        byte[] local = reader.Bytes(member.LocalHeaderOffset, LocalLength, $"the local header of {where}");
        if (BinaryPrimitives.ReadUInt32LittleEndian(local) != LocalSignature)
            throw Error($"{where} has no local header signature at offset {member.LocalHeaderOffset}");
        int flags = BinaryPrimitives.ReadUInt16LittleEndian(local.AsSpan(6));
        int method = BinaryPrimitives.ReadUInt16LittleEndian(local.AsSpan(8));
        if ((flags & 1) != 0) throw Error($"{where} is encrypted");
        if (method != 0) throw Error($"{where} is compressed ({MethodName(method)}) in its local header; only stored (uncompressed) members are read");
        int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(local.AsSpan(26));
        int extraLength = BinaryPrimitives.ReadUInt16LittleEndian(local.AsSpan(28));
        long start = member.LocalHeaderOffset + LocalLength + nameLength + extraLength;
        if (start > CentralDirectoryStart || member.Size > CentralDirectoryStart - start)
            throw Error($"{where} ({member.Size} bytes at offset {start}) runs past the start of the central directory ({CentralDirectoryStart})");
        byte[] name = reader.Bytes(member.LocalHeaderOffset + LocalLength, nameLength, $"the local header of {where}");
        if (!name.AsSpan().SequenceEqual(Encoding.UTF8.GetBytes(member.Name)))
            throw Error($"{where} is named '{Encoding.UTF8.GetString(name)}' in its local header");
        return start;
    }

    /// <summary>The whole of a small member, checked against its recorded CRC-32.</summary>
    public byte[] ReadSmall(ZipMember member, long limit)
    {
        if (member.Size > limit) throw Error($"member '{member.Name}' is {member.Size} bytes, over the {limit}-byte limit for it");
        long start = DataStart(member);
        byte[] bytes = new Reader(_path, _handle, FileLength).Bytes(start, (int)member.Size, $"member '{member.Name}'");
        uint crc = Crc32(bytes);
        if (crc != member.Crc32) throw Error($"member '{member.Name}' fails its CRC-32 check (recorded {member.Crc32:x8}, computed {crc:x8})");
        return bytes;
    }

    private static ZipMember ReadCentral(Reader reader, byte[] central, ref int at, long centralStart)
    {
        long where = centralStart + at;
        if (central.Length - at < CentralLength) throw reader.Error($"the central directory ends inside a member header at offset {where}");
        ReadOnlySpan<byte> h = central.AsSpan(at);
        if (BinaryPrimitives.ReadUInt32LittleEndian(h) != CentralSignature)
            throw reader.Error($"no central directory header signature at offset {where}");
        int flags = BinaryPrimitives.ReadUInt16LittleEndian(h[8..]);
        int method = BinaryPrimitives.ReadUInt16LittleEndian(h[10..]);
        uint crc = BinaryPrimitives.ReadUInt32LittleEndian(h[16..]);
        ulong compressed = BinaryPrimitives.ReadUInt32LittleEndian(h[20..]);
        ulong size = BinaryPrimitives.ReadUInt32LittleEndian(h[24..]);
        int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(h[28..]);
        int extraLength = BinaryPrimitives.ReadUInt16LittleEndian(h[30..]);
        int commentLength = BinaryPrimitives.ReadUInt16LittleEndian(h[32..]);
        uint diskStart = BinaryPrimitives.ReadUInt16LittleEndian(h[34..]);
        ulong localOffset = BinaryPrimitives.ReadUInt32LittleEndian(h[42..]);
        if (central.Length - at - CentralLength < nameLength + extraLength + commentLength)
            throw reader.Error($"the central directory ends inside the member header at offset {where}");
        string name;
        try { name = new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(h.Slice(CentralLength, nameLength)); }
        catch (DecoderFallbackException) { throw reader.Error($"the member at central directory offset {where} has a name that is not UTF-8"); }
        ReadOnlySpan<byte> extra = h.Slice(CentralLength + nameLength, extraLength);
        at += CentralLength + nameLength + extraLength + commentLength;

        // Zip64 extended information holds, in this order, only the values saturated in the fixed header.
        if (size == 0xFFFFFFFF || compressed == 0xFFFFFFFF || localOffset == 0xFFFFFFFF || diskStart == 0xFFFF)
        {
            ReadOnlySpan<byte> zip64 = FindExtra(extra, 0x0001);
            int used = 0;
            ulong disk = diskStart;
            if (!TakeZip64(zip64, ref used, ref size, size == 0xFFFFFFFF, 8) || !TakeZip64(zip64, ref used, ref compressed, compressed == 0xFFFFFFFF, 8)
                || !TakeZip64(zip64, ref used, ref localOffset, localOffset == 0xFFFFFFFF, 8) || !TakeZip64(zip64, ref used, ref disk, diskStart == 0xFFFF, 4))
                throw reader.Error($"member '{name}' has zip64 placeholder values but no zip64 extra field giving them");
            diskStart = (uint)disk;
        }
        if (diskStart != 0) throw reader.Error($"member '{name}' starts on disk {diskStart}; only single-file archives are read");
        if ((flags & 1) != 0) throw reader.Error($"member '{name}' is encrypted");
        if (method != 0) throw reader.Error($"member '{name}' is compressed ({MethodName(method)}); only stored (uncompressed) members are read, as torch.save writes them");
        if (compressed != size) throw reader.Error($"stored member '{name}' records {compressed} stored bytes but a size of {size}");
        if (size > long.MaxValue) throw reader.Error($"member '{name}' has an impossible size of {size} bytes");
        if (localOffset > (ulong)centralStart)
            throw reader.Error($"member '{name}' has its local header at offset {localOffset}, past the start of the central directory ({centralStart})");
        return new ZipMember(name, method, (long)size, crc, (long)localOffset);
    }

    // Replaces a saturated header value with the next one of the zip64 extra field; false when the field is too short.
    private static bool TakeZip64(ReadOnlySpan<byte> zip64, ref int used, ref ulong value, bool saturated, int width)
    {
        if (!saturated) return true;
        if (zip64.Length - used < width) return false;
        value = width == 8 ? BinaryPrimitives.ReadUInt64LittleEndian(zip64[used..]) : BinaryPrimitives.ReadUInt32LittleEndian(zip64[used..]);
        used += width;
        return true;
    }

    private static ReadOnlySpan<byte> FindExtra(ReadOnlySpan<byte> extra, ushort id)
    {
        while (extra.Length >= 4)
        {
            ushort tag = BinaryPrimitives.ReadUInt16LittleEndian(extra);
            int length = BinaryPrimitives.ReadUInt16LittleEndian(extra[2..]);
            if (length > extra.Length - 4) break;
            if (tag == id) return extra.Slice(4, length);
            extra = extra[(4 + length)..];
        }
        return [];
    }

    private static string MethodName(int method) => method switch
    {
        8 => "deflate, method 8",
        9 => "deflate64, method 9",
        12 => "bzip2, method 12",
        14 => "LZMA, method 14",
        93 => "zstd, method 93",
        _ => $"method {method}",
    };

    private PthFormatException Error(string problem) => new(_path, problem);

    private static readonly uint[] CrcTable = BuildCrcTable();

    private static uint[] BuildCrcTable()
    {
        var table = new uint[256];
        for (uint i = 0; i < 256; i++)
        {
            uint c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
            table[i] = c;
        }
        return table;
    }

    /// <summary>The ZIP (IEEE 802.3) CRC-32 of <paramref name="data"/>.</summary>
    public static uint Crc32(ReadOnlySpan<byte> data)
    {
        uint c = 0xFFFFFFFF;
        foreach (byte b in data) c = CrcTable[(c ^ b) & 0xFF] ^ (c >> 8);
        return ~c;
    }

    /// <summary>Positional reads that check every range against the file length first.</summary>
    private readonly struct Reader(string path, SafeFileHandle handle, long fileLength)
    {
        public PthFormatException Error(string problem) => new(path, problem);

        public byte[] Bytes(long offset, int length, string what)
        {
            if (offset < 0 || length < 0 || offset > fileLength || length > fileLength - offset)
                throw Error($"{what} ({length} bytes at offset {offset}) goes past the end of the file ({fileLength} bytes)");
            var bytes = new byte[length];
            Read(bytes, offset, what);
            return bytes;
        }

        public uint UInt32(long offset)
        {
            Span<byte> b = stackalloc byte[4];
            Read(b, offset, "the zip64 locator");
            return BinaryPrimitives.ReadUInt32LittleEndian(b);
        }

        public void Read(Span<byte> buffer, long offset, string what)
        {
            while (buffer.Length > 0)
            {
                int read = RandomAccess.Read(handle, buffer, offset);
                if (read == 0) throw Error($"the file ended early while reading {what} (at byte {offset}); it was shortened while being read");
                buffer = buffer[read..];
                offset += read;
            }
        }
    }
}
