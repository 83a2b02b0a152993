using System.IO.Compression;
using System.Text;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.IO;

/// <summary>
/// Writes a state dict as <c>torch.save</c> does (PyTorch's zip format: <c>archive/data.pkl</c>, one stored entry per
/// storage, <c>version</c>, <c>byteorder</c>), so <c>torch.load</c>, RWKV-LM, RWKV-PEFT and ChatRWKV read it. The
/// pickle is the plain protocol-2 stream of an <c>OrderedDict</c> of <c>_rebuild_tensor_v2</c> calls, which
/// <c>torch.load(weights_only=True)</c> accepts. Nothing is compressed. The file is written to a temporary name and
/// renamed into place.
/// </summary>
public static class PthWriter
{
    private const string Archive = "archive";

    /// <summary>
    /// Writes <paramref name="tensors"/> (name → tensor, in order) to <paramref name="path"/>; <paramref name="transform"/>
    /// supplies each tensor's saved value just before it is written (same shape and dtype), as for safetensors.
    /// Floating-point tensors are stored as <paramref name="dtype"/> when given, converted one at a time while writing.
    /// </summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, WeightTransform? transform = null, ScalarType? dtype = null)
    {
        var list = tensors.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        ScalarType Stored(Tensor t) => dtype is { } d && t.is_floating_point() ? d : t.dtype;
        foreach (var (name, t) in list)
        {
            if (!names.Add(name)) throw new ArgumentException($"Tensor '{name}' is given twice.", nameof(tensors));
            StorageType(Stored(t), name);
        }
        AtomicFile.Write(path, stream =>
        {
            using var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true);
            WriteEntry(zip, "data.pkl", s => s.Write(Pickle(list, Stored)));
            WriteEntry(zip, "byteorder", s => s.Write("little"u8));
            for (int i = 0; i < list.Count; i++)
            {
                var (name, original) = list[i];
                WriteEntry(zip, $"data/{i}", s =>
                {
                    using var scope = NewDisposeScope();
                    Tensor value = transform is null ? original : transform(name, original);
                    if (value.dtype != original.dtype || !value.shape.SequenceEqual(original.shape))
                        throw new InvalidOperationException($"The transform of '{name}' changed it from {original.dtype} [{string.Join(", ", original.shape)}] to {value.dtype} [{string.Join(", ", value.shape)}].");
                    TensorMemory.WriteTo(s, value.to(Stored(original)));
                });
            }
            WriteEntry(zip, "version", s => s.Write("3\n"u8));
        });
    }

    private static void WriteEntry(ZipArchive zip, string name, Action<Stream> write)
    {
        using Stream entry = zip.CreateEntry($"{Archive}/{name}", CompressionLevel.NoCompression).Open();
        write(entry);
    }


    private static string StorageType(ScalarType dtype, string name) => dtype switch
    {
        ScalarType.Float32 => "FloatStorage",
        ScalarType.Float16 => "HalfStorage",
        ScalarType.BFloat16 => "BFloat16Storage",
        ScalarType.Float64 => "DoubleStorage",
        ScalarType.Int64 => "LongStorage",
        ScalarType.Int32 => "IntStorage",
        ScalarType.Int16 => "ShortStorage",
        ScalarType.Int8 => "CharStorage",
        ScalarType.Byte => "ByteStorage",
        ScalarType.Bool => "BoolStorage",
        _ => throw new NotSupportedException($"Tensor '{name}' has dtype {dtype}, which has no torch storage type here."),
    };

    // collections.OrderedDict([(name, torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict())), …])
    private static byte[] Pickle(List<KeyValuePair<string, Tensor>> tensors, Func<Tensor, ScalarType> stored)
    {
        var p = new MemoryStream();
        p.Write([0x80, 2]);                                                   // PROTO 2
        Global(p, "collections", "OrderedDict");
        p.WriteByte((byte)')');                                               // EMPTY_TUPLE
        p.WriteByte((byte)'R');                                               // REDUCE
        if (tensors.Count > 0)
        {
            p.WriteByte((byte)'(');                                           // MARK
            for (int i = 0; i < tensors.Count; i++)
            {
                var (name, t) = tensors[i];
                long[] shape = t.shape;
                long[] stride = new long[shape.Length];
                for (int d = shape.Length - 1, s = 1; d >= 0; s *= (int)Math.Max(1, shape[d]), d--) stride[d] = s;
                Unicode(p, name);
                Global(p, "torch._utils", "_rebuild_tensor_v2");
                p.WriteByte((byte)'(');                                       // MARK: the call's arguments
                // Persistent id ('storage', torch.<Type>Storage, key, location, numel).
                p.WriteByte((byte)'(');
                Unicode(p, "storage");
                Global(p, "torch", StorageType(stored(t), name));
                Unicode(p, i.ToString(System.Globalization.CultureInfo.InvariantCulture));
                Unicode(p, "cpu");
                Int(p, t.numel());
                p.WriteByte((byte)'t');                                       // TUPLE
                p.WriteByte((byte)'Q');                                       // BINPERSID
                Int(p, 0);                                                    // storage offset
                Tuple(p, shape);
                Tuple(p, stride);
                p.WriteByte(0x89);                                            // NEWFALSE: requires_grad
                Global(p, "collections", "OrderedDict");
                p.WriteByte((byte)')');
                p.WriteByte((byte)'R');                                       // backward hooks: OrderedDict()
                p.WriteByte((byte)'t');                                       // TUPLE
                p.WriteByte((byte)'R');                                       // REDUCE
            }
            p.WriteByte((byte)'u');                                           // SETITEMS
        }
        p.WriteByte((byte)'.');                                               // STOP
        return p.ToArray();
    }

    private static void Global(Stream p, string module, string name)
    {
        p.WriteByte((byte)'c');
        p.Write(Encoding.ASCII.GetBytes($"{module}\n{name}\n"));
    }

    private static void Unicode(Stream p, string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        p.WriteByte((byte)'X');                                               // BINUNICODE
        p.Write(BitConverter.GetBytes(bytes.Length));
        p.Write(bytes);
    }

    private static void Int(Stream p, long value)
    {
        if (value is >= 0 and < 256) p.Write([(byte)'K', (byte)value]);      // BININT1
        else if (value is >= int.MinValue and <= int.MaxValue)
        {
            p.WriteByte((byte)'J');                                           // BININT
            p.Write(BitConverter.GetBytes((int)value));
        }
        else
        {
            p.Write([0x8a, 8]);                                               // LONG1, 8 bytes little-endian
            p.Write(BitConverter.GetBytes(value));
        }
    }

    private static void Tuple(Stream p, long[] values)
    {
        p.WriteByte((byte)'(');
        foreach (long v in values) Int(p, v);
        p.WriteByte((byte)'t');
    }
}
