using System.Buffers.Binary;
using Microsoft.ML.Bone.IO;
using Microsoft.Win32.SafeHandles;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Models.Rwkv6;

/// <summary>
/// rwkv.cpp's model file (magic "ggmf", version 100/101): a 24-byte header, then per tensor its dimension count,
/// name length, data type, ggml shape (fastest dimension first) and name, followed by the data, unaligned. FP32 and
/// FP16 tensors are read; quantized ones (Q4_0 … Q8_0) are refused. rwkv.cpp's converter reshapes and transposes
/// some RWKV-6 tensors; <see cref="ReadInto"/> returns every tensor in BlinkDL's original <c>.pth</c> shape.
/// </summary>
public sealed unsafe class RwkvCppFile : IDisposable
{
    /// <summary>"ggmf" read as a little-endian int32.</summary>
    public const int Magic = 0x67676d66;

    private sealed record Record(string Name, int DataType, long[] FileShape, long Offset, long ByteLength);

    private readonly SafeFileHandle _handle;
    private readonly Dictionary<string, Record> _records;

    private RwkvCppFile(string path, SafeFileHandle handle, Dictionary<string, Record> records, int vocab, int embed, int layers)
    {
        FilePath = path;
        _handle = handle;
        _records = records;
        (Vocab, Embed, Layers) = (vocab, embed, layers);
    }

    /// <summary>Path of the file.</summary>
    public string FilePath { get; }

    /// <summary>The header's n_vocab, n_embed, n_layer.</summary>
    public int Vocab { get; }

    /// <inheritdoc cref="Vocab"/>
    public int Embed { get; }

    /// <inheritdoc cref="Vocab"/>
    public int Layers { get; }

    /// <summary>Tensor names in file order.</summary>
    public IReadOnlyCollection<string> Names => _records.Keys;

    /// <summary>True when the file starts with rwkv.cpp's magic.</summary>
    public static bool IsRwkvCppFile(string path)
    {
        if (!File.Exists(path) || new FileInfo(IO.InputFile.Resolve(path)).Length < 24) return false;
        Span<byte> head = stackalloc byte[4];
        using var stream = IO.InputFile.OpenRead(path);
        return stream.Read(head) == 4 && BinaryPrimitives.ReadInt32LittleEndian(head) == Magic;
    }

    /// <summary>Reads and checks the header and every record header (no tensor data); errors name the file and the problem.</summary>
    public static RwkvCppFile Open(string path)
    {
        SafeFileHandle handle = File.OpenHandle(IO.InputFile.Resolve(path), FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            long length = RandomAccess.GetLength(handle);
            Span<byte> header = stackalloc byte[24];
            if (length < 24 || RandomAccess.Read(handle, header, 0) != 24) throw Error(path, $"{length} bytes is too short for the 24-byte header");
            int magic = I32(header, 0), version = I32(header, 4), vocab = I32(header, 8), embed = I32(header, 12), layers = I32(header, 16);
            if (magic != Magic) throw Error(path, "not an rwkv.cpp file (the magic is not \"ggmf\")");
            if (version is not (100 or 101)) throw Error(path, $"file version {version}; versions 100 and 101 are supported");
            if (vocab is <= 0 or > ConfigLimits.Vocabulary || embed is <= 0 or > ConfigLimits.Width || layers is <= 0 or > ConfigLimits.Layers)
                throw Error(path, $"the header (n_vocab {vocab}, n_embed {embed}, n_layer {layers}) is out of range");

            var records = new Dictionary<string, Record>(StringComparer.Ordinal);
            long at = 24;
            Span<byte> fields = stackalloc byte[12];
            while (at < length)
            {
                if (length - at < 12 || RandomAccess.Read(handle, fields, at) != 12) throw Error(path, $"the file ends inside a tensor header at byte {at}");
                int dims = I32(fields, 0), nameLength = I32(fields, 4), dataType = I32(fields, 8);
                if (dims is < 1 or > 4 || nameLength is < 1 or > 1024) throw Error(path, $"a tensor header at byte {at} has {dims} dimensions and a {nameLength}-byte name");
                long headerLength = 12 + 4L * dims + nameLength;
                if (length - at < headerLength) throw Error(path, $"the file ends inside a tensor header at byte {at}");
                var rest = new byte[4 * dims + nameLength];
                RandomAccess.Read(handle, rest, at + 12);
                long[] ggml = Enumerable.Range(0, dims).Select(i => (long)I32(rest, 4 * i)).ToArray();
                string name = System.Text.Encoding.UTF8.GetString(rest, 4 * dims, nameLength);
                if (ggml.Any(d => d <= 0 || d > int.MaxValue)) throw Error(path, $"tensor '{name}' has shape [{string.Join(", ", ggml)}]");
                int elementSize = dataType switch
                {
                    0 => 4,
                    1 => 2,
                    2 or 3 or 7 or 8 or 9 => throw Error(path, $"tensor '{name}' is quantized ({QuantName(dataType)}); only FP32 and FP16 files load (convert with rwkv.cpp's tools, or use the .pth)"),
                    _ => throw Error(path, $"tensor '{name}' has unknown data type {dataType}"),
                };
                long count = 1, bytes;
                try
                {
                    foreach (long d in ggml) count = checked(count * d);
                    bytes = checked(count * elementSize);
                }
                catch (OverflowException) { throw Error(path, $"tensor '{name}' has shape [{string.Join(", ", ggml)}], whose size overflows"); }
                long data = at + headerLength;
                if (bytes > length - data) throw Error(path, $"tensor '{name}' needs {bytes} bytes but only {length - data} remain");
                if (!records.TryAdd(name, new Record(name, dataType, [.. ggml.Reverse()], data, bytes))) throw Error(path, $"tensor '{name}' appears twice");
                at = data + bytes;
            }
            return new RwkvCppFile(path, handle, records, vocab, embed, layers);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>The shape of <paramref name="name"/> as BlinkDL's <c>.pth</c> has it, or null when the file lacks it.</summary>
    public long[]? Shape(string name) => _records.TryGetValue(name, out Record? r) ? Original(name, r.FileShape, Embed) : null;

    /// <summary>Reads <paramref name="name"/> into <paramref name="target"/> (BlinkDL shape, any dtype and device), undoing the converter's changes.</summary>
    public void ReadInto(string name, Tensor target, WeightFingerprint? fingerprint = null)
    {
        Record r = _records.TryGetValue(name, out Record? found) ? found : throw Error(FilePath, $"no tensor '{name}'");
        using var scope = NewDisposeScope();
        Tensor raw = empty(r.FileShape, dtype: r.DataType == 1 ? ScalarType.Float16 : ScalarType.Float32);
        byte* pointer = TensorMemory.Pointer(raw);
        for (long done = 0; done < r.ByteLength;)
        {
            int read = RandomAccess.Read(_handle, new Span<byte>(pointer + done, (int)Math.Min(1 << 30, r.ByteLength - done)), r.Offset + done);
            if (read == 0) throw Error(FilePath, $"the file ended inside '{name}'");
            done += read;
        }
        fingerprint?.AddMemory(Path.GetFileName(FilePath), name, (IntPtr)pointer, r.ByteLength);
        Tensor value = Undo(name, raw);
        if (!value.shape.SequenceEqual(target.shape))
            throw Error(FilePath, $"tensor '{name}' is [{string.Join(", ", value.shape)}] but the model expects [{string.Join(", ", target.shape)}]");
        target.copy_(value);
    }

    /// <inheritdoc/>
    public void Dispose() => _handle.Dispose();

    // The converter (rwkv.cpp python/convert_pytorch_to_ggml.py) squeezed the [1, 1, C] mixers, transposed
    // time_maa_w1 and the decay LoRA, swapped time_maa_w2's last axes and gave time_decay / time_faaaa a trailing axis.
    private static long[] Original(string name, long[] shape, int embed)
    {
        string leaf = name[(name.LastIndexOf('.') + 1)..];
        return leaf switch
        {
            "time_maa_x" or "time_maa_w" or "time_maa_k" or "time_maa_v" or "time_maa_r" or "time_maa_g" => [1, 1, shape.Aggregate(1L, (a, b) => a * b)],
            "time_decay" => [1, 1, shape.Aggregate(1L, (a, b) => a * b)],
            "time_faaaa" when shape.Length == 3 => [shape[0], shape[1]],
            "time_maa_w1" or "time_decay_w1" or "time_decay_w2" when shape.Length == 2 => [shape[1], shape[0]],
            "time_maa_w2" when shape.Length == 3 => [shape[0], shape[2], shape[1]],
            _ => shape,
        };
    }

    private static Tensor Undo(string name, Tensor raw)
    {
        string leaf = name[(name.LastIndexOf('.') + 1)..];
        return leaf switch
        {
            "time_maa_x" or "time_maa_w" or "time_maa_k" or "time_maa_v" or "time_maa_r" or "time_maa_g" or "time_decay" => raw.reshape(1, 1, -1),
            "time_faaaa" when raw.ndim == 3 => raw.squeeze(-1),
            "time_maa_w1" or "time_decay_w1" or "time_decay_w2" when raw.ndim == 2 => raw.t(),
            "time_maa_w2" when raw.ndim == 3 => raw.transpose(1, 2),
            _ => raw,
        };
    }

    private static string QuantName(int type) => type switch { 2 => "Q4_0", 3 => "Q4_1", 7 => "Q5_0", 8 => "Q5_1", _ => "Q8_0" };

    private static int I32(ReadOnlySpan<byte> bytes, int at) => BinaryPrimitives.ReadInt32LittleEndian(bytes[at..]);

    private static InvalidDataException Error(string path, string problem) => new($"{path}: {problem}.");
}
