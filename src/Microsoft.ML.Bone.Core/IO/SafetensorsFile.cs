using Microsoft.Win32.SafeHandles;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.IO;

/// <summary>
/// A read-only <c>.safetensors</c> file. The header is validated completely when the file is opened; tensor bytes are
/// read with positional reads straight into the destination tensor's memory when asked for, so nothing is read twice,
/// nothing is staged, and no mapping keeps file pages in the process's resident memory.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>The largest header accepted (as in the reference implementation), so a hostile length cannot allocate much.</summary>
    public const long MaxHeaderLength = 100_000_000;

    // One read call moves at most this much (Linux caps a read near 2 GiB).
    private const int ReadChunk = 1 << 30;

    private SafeFileHandle? _handle;
    private readonly long _dataStart;
    private readonly Dictionary<string, SafetensorsEntry> _byName;

    private SafetensorsFile(string path, SafeFileHandle handle, long dataStart, List<SafetensorsEntry> entries, Dictionary<string, string> metadata)
    {
        FilePath = path;
        _handle = handle;
        _dataStart = dataStart;
        Entries = entries;
        Metadata = metadata;
        _byName = entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
    }

    /// <summary>Path of the file.</summary>
    public string FilePath { get; }

    /// <summary>Tensor entries in data order.</summary>
    public IReadOnlyList<SafetensorsEntry> Entries { get; }

    /// <summary>The <c>__metadata__</c> strings (empty when absent).</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>True when the file holds a tensor named <paramref name="name"/>.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The entry for <paramref name="name"/>; throws <see cref="KeyNotFoundException"/> naming the file when absent.</summary>
    public SafetensorsEntry this[string name] =>
        _byName.TryGetValue(name, out var e) ? e : throw new KeyNotFoundException($"{FilePath}: no tensor named '{name}'.");

    /// <summary>Opens and validates <paramref name="path"/>; problems raise <see cref="SafetensorsFormatException"/>.</summary>
    public static SafetensorsFile Open(string path)
    {
        SafeFileHandle handle = File.OpenHandle(InputFile.Resolve(path), FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            long fileLength = RandomAccess.GetLength(handle);
            if (fileLength < 8) throw new SafetensorsFormatException(path, $"file is {fileLength} bytes, shorter than the 8-byte header length");
            Span<byte> lengthBytes = stackalloc byte[8];
            ReadExactly(handle, lengthBytes, 0, path);
            ulong headerLength = BitConverter.ToUInt64(lengthBytes);
            if (headerLength > (ulong)(fileLength - 8))
                throw new SafetensorsFormatException(path, $"header length {headerLength} goes beyond the end of the file ({fileLength} bytes)");
            if (headerLength > MaxHeaderLength)
                throw new SafetensorsFormatException(path, $"header length {headerLength} exceeds the {MaxHeaderLength}-byte limit");
            var header = new byte[headerLength];
            ReadExactly(handle, header, 8, path);
            long dataStart = 8 + header.Length;
            var (entries, metadata) = ParseHeader(path, header, fileLength - dataStart);
            return new SafetensorsFile(path, handle, dataStart, entries, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>A new CPU tensor with the data of <paramref name="name"/>, in the file's dtype.</summary>
    public Tensor Load(string name)
    {
        SafetensorsEntry entry = this[name];
        Tensor tensor = empty(entry.Shape, dtype: entry.DType.ToScalarType());
        try { ReadInto(entry, tensor); }
        catch { tensor.Dispose(); throw; }
        return tensor;
    }

    /// <summary>Loads <paramref name="name"/> and converts it to <paramref name="dtype"/>.</summary>
    public Tensor Load(string name, ScalarType dtype)
    {
        Tensor t = Load(name);
        if (t.dtype == dtype) return t;
        using (t) return t.to(dtype);
    }

    /// <summary>
    /// Reads the bytes of <paramref name="entry"/> into <paramref name="destination"/>, a contiguous CPU tensor of the
    /// entry's dtype and element count.
    /// </summary>
    public void ReadInto(SafetensorsEntry entry, Tensor destination)
    {
        SafeFileHandle handle = _handle ?? throw new ObjectDisposedException(nameof(SafetensorsFile), $"{FilePath}: the file was closed.");
        if (destination.device_type != DeviceType.CPU || !destination.is_contiguous() || destination.dtype != entry.DType.ToScalarType() || destination.numel() * destination.element_size() != entry.ByteLength)
            throw new ArgumentException($"Tensor '{entry.Name}' needs a contiguous CPU destination of {entry.DType} with {entry.ByteLength} bytes.", nameof(destination));
        if (entry.ByteLength == 0) return;
        byte* pointer = TensorMemory.Pointer(destination);
        for (long done = 0; done < entry.ByteLength; done += ReadChunk)
        {
            int count = (int)Math.Min(ReadChunk, entry.ByteLength - done);
            ReadExactly(handle, new Span<byte>(pointer + done, count), _dataStart + entry.DataBegin + done, FilePath);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _handle?.Dispose();
        _handle = null;
    }

    private static void ReadExactly(SafeFileHandle handle, Span<byte> buffer, long offset, string path)
    {
        while (buffer.Length > 0)
        {
            int read = RandomAccess.Read(handle, buffer, offset);
            if (read == 0) throw new SafetensorsFormatException(path, $"the file ended early (at byte {offset}); it was shortened while being read");
            buffer = buffer[read..];
            offset += read;
        }
    }

    private static (List<SafetensorsEntry>, Dictionary<string, string>) ParseHeader(string path, byte[] header, long dataLength)
    {
        // The JSON reader accepts broken UTF-8 inside strings and fails only when one is read; refuse it up front.
        if (!System.Text.Unicode.Utf8.IsValid(header)) throw new SafetensorsFormatException(path, "header is not valid UTF-8");
        JsonDocument document;
        try { document = JsonDocument.Parse(header); }
        catch (JsonException e) { throw new SafetensorsFormatException(path, $"header is not valid JSON ({e.Message})"); }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
                throw new SafetensorsFormatException(path, $"header must be a JSON object, found {document.RootElement.ValueKind}");
            var entries = new List<SafetensorsEntry>();
            var metadata = new Dictionary<string, string>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (JsonProperty property in document.RootElement.EnumerateObject())
            {
                if (!seen.Add(property.Name)) throw new SafetensorsFormatException(path, $"tensor '{property.Name}' appears twice in the header");
                if (property.Name == "__metadata__") ReadMetadata(path, property.Value, metadata);
                else entries.Add(ReadEntry(path, property.Name, property.Value, dataLength));
            }
            CheckCoverage(path, entries, dataLength);
            entries.Sort((a, b) => a.DataBegin.CompareTo(b.DataBegin));
            return (entries, metadata);
        }
    }

    private static void ReadMetadata(string path, JsonElement value, Dictionary<string, string> metadata)
    {
        if (value.ValueKind != JsonValueKind.Object) throw new SafetensorsFormatException(path, "__metadata__ must be an object of strings");
        foreach (JsonProperty p in value.EnumerateObject())
        {
            if (p.Value.ValueKind != JsonValueKind.String) throw new SafetensorsFormatException(path, $"__metadata__ value '{p.Name}' is not a string");
            metadata[p.Name] = p.Value.GetString()!;
        }
    }

    private static SafetensorsEntry ReadEntry(string path, string name, JsonElement value, long dataLength)
    {
        string where = $"tensor '{name}'";
        if (value.ValueKind != JsonValueKind.Object) throw new SafetensorsFormatException(path, $"{where} is not an object");
        if (!value.TryGetProperty("dtype", out JsonElement dtypeElement) || dtypeElement.ValueKind != JsonValueKind.String)
            throw new SafetensorsFormatException(path, $"{where} has no dtype string");
        string dtypeName = dtypeElement.GetString()!;
        if (!SafetensorsDTypes.TryParse(dtypeName, out SafetensorsDType dtype))
            throw new SafetensorsFormatException(path, $"{where} has unknown or unsupported dtype '{dtypeName}'");
        if (!value.TryGetProperty("shape", out JsonElement shapeElement) || shapeElement.ValueKind != JsonValueKind.Array)
            throw new SafetensorsFormatException(path, $"{where} has no shape array");
        var shape = new long[shapeElement.GetArrayLength()];
        long elements = 1;
        int i = 0;
        foreach (JsonElement dim in shapeElement.EnumerateArray())
        {
            if (dim.ValueKind != JsonValueKind.Number || !dim.TryGetInt64(out long d) || d < 0)
                throw new SafetensorsFormatException(path, $"{where} has an invalid dimension {dim.GetRawText()} in its shape");
            shape[i++] = d;
            try { elements = checked(elements * d); }
            catch (OverflowException) { throw new SafetensorsFormatException(path, $"{where} has a shape whose element count overflows"); }
        }
        if (!value.TryGetProperty("data_offsets", out JsonElement offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2
            || !offsets[0].TryGetInt64(out long begin) || !offsets[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw new SafetensorsFormatException(path, $"{where} needs data_offsets [begin, end] with 0 ≤ begin ≤ end");
        if (end > dataLength)
            throw new SafetensorsFormatException(path, $"{where} has data_offsets [{begin}, {end}] beyond the {dataLength}-byte data section");
        long needed;
        try { needed = checked(elements * dtype.ElementSize()); }
        catch (OverflowException) { throw new SafetensorsFormatException(path, $"{where} has a shape whose byte size overflows"); }
        if (end - begin != needed)
            throw new SafetensorsFormatException(path, $"{where} has data_offsets [{begin}, {end}] ({end - begin} bytes) but shape [{string.Join(", ", shape)}] of {dtype} needs {needed} bytes");
        return new SafetensorsEntry(name, dtype, shape, begin, end);
    }

    // The data section must be tiled exactly: no overlap, no gap, nothing left over.
    private static void CheckCoverage(string path, List<SafetensorsEntry> entries, long dataLength)
    {
        long position = 0;
        string? previous = null;
        foreach (SafetensorsEntry e in entries.OrderBy(e => e.DataBegin).ThenBy(e => e.DataEnd))
        {
            if (e.DataBegin < position)
                throw new SafetensorsFormatException(path, $"tensor '{e.Name}' overlaps tensor '{previous}' (data_offsets start at {e.DataBegin}, before {position})");
            if (e.DataBegin > position)
                throw new SafetensorsFormatException(path, $"there is a gap of {e.DataBegin - position} bytes before tensor '{e.Name}' in the data section");
            position = e.DataEnd;
            previous = e.Name;
        }
        if (position != dataLength)
            throw new SafetensorsFormatException(path, $"the data section has {dataLength - position} bytes not covered by any tensor");
    }
}
