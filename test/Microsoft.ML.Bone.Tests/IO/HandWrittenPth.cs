using System.Buffers.Binary;
using System.Text;

namespace Microsoft.ML.Bone.Tests.IO;

/// <summary>
/// Builds <c>torch.save</c> checkpoints byte by byte from the formats' descriptions (pickle opcodes; ZIP local
/// headers, central directory and end records, zip64 included), independently of the product's reader, so tests can
/// make valid files and then break exactly one thing in them.
/// </summary>
internal static class HandWrittenPth
{
    public const byte PROTO = 0x80, EMPTY_DICT = (byte)'}', EMPTY_LIST = (byte)']', EMPTY_TUPLE = (byte)')', MARK = (byte)'(',
        TUPLE = (byte)'t', TUPLE1 = 0x85, TUPLE2 = 0x86, TUPLE3 = 0x87, SETITEM = (byte)'s', SETITEMS = (byte)'u', REDUCE = (byte)'R',
        BINPERSID = (byte)'Q', BUILD = (byte)'b', STOP = (byte)'.', NEWFALSE = 0x89, NEWTRUE = 0x88, NONE = (byte)'N',
        BINPUT = (byte)'q', BINGET = (byte)'h', STACK_GLOBAL = 0x93, MEMOIZE = 0x94, APPEND = (byte)'a';

    /// <summary>Appends pickle opcodes and their arguments.</summary>
    public sealed class Pickle
    {
        private readonly List<byte> _bytes = [];

        public Pickle Op(params byte[] bytes)
        {
            _bytes.AddRange(bytes);
            return this;
        }

        public Pickle Proto(int version = 2) => Op(PROTO, (byte)version);

        /// <summary>BINUNICODE.</summary>
        public Pickle Str(string s)
        {
            byte[] utf8 = Encoding.UTF8.GetBytes(s);
            return Op((byte)'X').UInt32((uint)utf8.Length).Op(utf8);
        }

        /// <summary>SHORT_BINUNICODE (protocol 4).</summary>
        public Pickle ShortStr(string s)
        {
            byte[] utf8 = Encoding.UTF8.GetBytes(s);
            return Op(0x8c, (byte)utf8.Length).Op(utf8);
        }

        /// <summary>The smallest integer opcode Python's pickler would use, or LONG1 when <paramref name="long1"/>.</summary>
        public Pickle Int(long v, bool long1 = false)
        {
            if (!long1 && v is >= 0 and < 256) return Op((byte)'K', (byte)v);
            if (!long1 && v is >= 0 and < 65536) return Op((byte)'M', (byte)v, (byte)(v >> 8));
            if (!long1 && v is >= int.MinValue and <= int.MaxValue)
            {
                var b = new byte[4];
                BinaryPrimitives.WriteInt32LittleEndian(b, (int)v);
                return Op((byte)'J').Op(b);
            }
            // LONG1: the shortest little-endian two's complement that keeps the sign.
            var bytes = new List<byte>();
            long rest = v;
            do
            {
                bytes.Add((byte)rest);
                rest >>= 8;
            } while (!(rest == 0 && (bytes[^1] & 0x80) == 0 || rest == -1 && (bytes[^1] & 0x80) != 0));
            return Op(0x8a, (byte)bytes.Count).Op([.. bytes]);
        }

        public Pickle Global(string module, string name) => Op((byte)'c').Op(Encoding.UTF8.GetBytes($"{module}\n{name}\n"));

        public Pickle UInt32(uint v)
        {
            var b = new byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(b, v);
            return Op(b);
        }

        public Pickle Ints(IEnumerable<long> values)
        {
            Op(MARK);
            foreach (long v in values) Int(v);
            return Op(TUPLE);
        }

        public byte[] ToArray() => [.. _bytes];
    }

    /// <summary>A tensor entry of a hand-written state dict, as <c>_rebuild_tensor_v2</c> receives it.</summary>
    public sealed record TensorSpec(string Name, string StorageType, string Key, long Numel, long Offset, long[] Size, long[] Stride, bool Long1 = false);

    /// <summary>
    /// The pickle <c>torch.save</c> writes for a dict (or OrderedDict) of tensors, with the rebuild global and the
    /// empty-hooks OrderedDict memoized and fetched again as Python's pickler does.
    /// </summary>
    public static byte[] StateDict(IEnumerable<TensorSpec> tensors, bool ordered = true)
    {
        var p = new Pickle().Proto(2);
        if (ordered) p.Global("collections", "OrderedDict").Op(BINPUT, 0).Op(EMPTY_TUPLE, REDUCE);
        else p.Op(EMPTY_DICT);
        p.Op(MARK);
        bool first = true;
        foreach (TensorSpec t in tensors)
        {
            p.Str(t.Name);
            if (first) p.Global("torch._utils", "_rebuild_tensor_v2").Op(BINPUT, 1);
            else p.Op(BINGET, 1);
            p.Op(MARK).Op(MARK).Str("storage").Global("torch", t.StorageType).Str(t.Key).Str("cpu").Int(t.Numel, t.Long1).Op(TUPLE, BINPERSID);
            p.Int(t.Offset, t.Long1).Ints(t.Size).Ints(t.Stride).Op(NEWFALSE);
            if (ordered) p.Op(BINGET, 0);
            else if (first) p.Global("collections", "OrderedDict").Op(BINPUT, 0);
            else p.Op(BINGET, 0);
            p.Op(EMPTY_TUPLE, REDUCE, TUPLE, REDUCE);
            first = false;
        }
        return p.Op(SETITEMS, STOP).ToArray();
    }

    /// <summary>One ZIP member; <paramref name="Method"/> is written as given, without compressing anything.</summary>
    public sealed record Member(string Name, byte[] Data, int Method = 0, int Flags = 0);

    /// <summary>A written archive and where its records are, for tests that corrupt one field.</summary>
    public sealed record Archive(byte[] Bytes, long CentralStart, long EndOffset, Dictionary<string, long> CentralHeaders, Dictionary<string, long> LocalHeaders);

    /// <summary>
    /// A ZIP archive of stored members with each member's data aligned to 64 bytes by padding in the local extra field
    /// (as PyTorch's writer does). With <paramref name="zip64"/>, every size and offset is moved to zip64 extra fields
    /// and zip64 end records, as a writer does for archives over 4 GiB.
    /// </summary>
    public static Archive Zip(IReadOnlyList<Member> members, bool zip64 = false)
    {
        var s = new MemoryStream();
        var w = new BinaryWriter(s);
        var locals = new Dictionary<string, long>();
        foreach (Member m in members)
        {
            locals[m.Name] = s.Position;
            byte[] name = Encoding.UTF8.GetBytes(m.Name);
            byte[] zipExtra = zip64 ? [.. U16(1), .. U16(16), .. U64((ulong)m.Data.Length), .. U64((ulong)m.Data.Length)] : [];
            long dataStart = s.Position + 30 + name.Length + zipExtra.Length + 4;
            int pad = (int)((64 - dataStart % 64) % 64);
            byte[] extra = [.. zipExtra, .. U16(0x4246), .. U16((ushort)pad), .. new byte[pad]];
            w.Write(0x04034b50u);
            w.Write((ushort)(zip64 ? 45 : 20));
            w.Write((ushort)m.Flags);
            w.Write((ushort)m.Method);
            w.Write(0u); // time and date
            w.Write(Crc32(m.Data));
            w.Write(zip64 ? 0xFFFFFFFFu : (uint)m.Data.Length);
            w.Write(zip64 ? 0xFFFFFFFFu : (uint)m.Data.Length);
            w.Write((ushort)name.Length);
            w.Write((ushort)extra.Length);
            w.Write(name);
            w.Write(extra);
            w.Write(m.Data);
        }
        long centralStart = s.Position;
        var centrals = new Dictionary<string, long>();
        foreach (Member m in members)
        {
            centrals[m.Name] = s.Position;
            byte[] name = Encoding.UTF8.GetBytes(m.Name);
            byte[] extra = zip64 ? [.. U16(1), .. U16(24), .. U64((ulong)m.Data.Length), .. U64((ulong)m.Data.Length), .. U64((ulong)locals[m.Name])] : [];
            w.Write(0x02014b50u);
            w.Write((ushort)(zip64 ? 45 : 20));
            w.Write((ushort)(zip64 ? 45 : 20));
            w.Write((ushort)m.Flags);
            w.Write((ushort)m.Method);
            w.Write(0u);
            w.Write(Crc32(m.Data));
            w.Write(zip64 ? 0xFFFFFFFFu : (uint)m.Data.Length);
            w.Write(zip64 ? 0xFFFFFFFFu : (uint)m.Data.Length);
            w.Write((ushort)name.Length);
            w.Write((ushort)extra.Length);
            w.Write((ushort)0); // comment
            w.Write((ushort)0); // disk
            w.Write((ushort)0); // internal attributes
            w.Write(0u); // external attributes
            w.Write(zip64 ? 0xFFFFFFFFu : (uint)locals[m.Name]);
            w.Write(name);
            w.Write(extra);
        }
        long centralLength = s.Position - centralStart;
        if (zip64)
        {
            long zip64End = s.Position;
            w.Write(0x06064b50u);
            w.Write(44UL);
            w.Write((ushort)45);
            w.Write((ushort)45);
            w.Write(0u);
            w.Write(0u);
            w.Write((ulong)members.Count);
            w.Write((ulong)members.Count);
            w.Write((ulong)centralLength);
            w.Write((ulong)centralStart);
            w.Write(0x07064b50u);
            w.Write(0u);
            w.Write((ulong)zip64End);
            w.Write(1u);
        }
        long endOffset = s.Position;
        w.Write(0x06054b50u);
        w.Write((ushort)0);
        w.Write((ushort)0);
        w.Write((ushort)(zip64 ? 0xFFFF : members.Count));
        w.Write((ushort)(zip64 ? 0xFFFF : members.Count));
        w.Write(zip64 ? 0xFFFFFFFFu : (uint)centralLength);
        w.Write(zip64 ? 0xFFFFFFFFu : (uint)centralStart);
        w.Write((ushort)0);
        w.Flush();
        return new Archive(s.ToArray(), centralStart, endOffset, centrals, locals);
    }

    /// <summary>
    /// A checkpoint with the members <c>torch.save</c> writes: <c>data.pkl</c>, <c>byteorder</c> (unless null),
    /// one <c>data/&lt;key&gt;</c> per storage, and <c>version</c>; <paramref name="alter"/> may change any member.
    /// </summary>
    public static Archive Checkpoint(byte[] pickle, IEnumerable<(string Key, byte[] Data)> storages, string? byteOrder = "little", bool zip64 = false, Func<Member, Member>? alter = null)
    {
        var members = new List<Member> { new("archive/data.pkl", pickle) };
        if (byteOrder is not null) members.Add(new("archive/byteorder", Encoding.ASCII.GetBytes(byteOrder)));
        foreach (var (key, data) in storages) members.Add(new($"archive/data/{key}", data));
        members.Add(new("archive/version", "3\n"u8.ToArray()));
        return Zip(alter is null ? members : members.Select(alter).ToList(), zip64);
    }

    /// <summary>Little-endian bytes of float32 values.</summary>
    public static byte[] F32(params float[] values)
    {
        var bytes = new byte[values.Length * 4];
        for (int i = 0; i < values.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), values[i]);
        return bytes;
    }

    private static byte[] U16(ushort v) => [(byte)v, (byte)(v >> 8)];

    private static byte[] U64(ulong v)
    {
        var b = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(b, v);
        return b;
    }

    // Bitwise CRC-32 (reflected, polynomial 0xEDB88320), written out from its definition.
    private static uint Crc32(byte[] data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320 & (uint)-(int)(crc & 1));
        }
        return ~crc;
    }
}
