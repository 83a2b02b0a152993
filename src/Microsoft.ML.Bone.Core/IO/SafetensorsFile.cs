using System.IO.MemoryMappedFiles;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.IO;

/// <summary>
/// A read-only, memory-mapped <c>.safetensors</c> file. The header is validated completely when the file is opened;
/// tensor data is copied straight from the mapping into tensor memory when a tensor is loaded, so nothing is read
/// twice and nothing is read until asked for.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    /// <summary>The largest header accepted (as in the reference implementation), so a hostile length cannot allocate much.</summary>
    public const long MaxHeaderLength = 100_000_000;

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private readonly byte* _base;
    private readonly long _dataStart;
    private readonly Dictionary<string, SafetensorsEntry> _byName;

    private SafetensorsFile(string path, MemoryMappedFile? map, MemoryMappedViewAccessor? view, long dataStart, List<SafetensorsEntry> entries, Dictionary<string, string> metadata)
    {
        FilePath = path;
        _map = map;
        _view = view;
        _dataStart = dataStart;
        Entries = entries;
        Metadata = metadata;
        _byName = entries.ToDictionary(e => e.Name, StringComparer.Ordinal);
        if (view is not null)
        {
            byte* pointer = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
            _base = pointer + view.PointerOffset;
        }
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
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: file not found.", path);
        long fileLength = new FileInfo(path).Length;
        if (fileLength < 8) throw new SafetensorsFormatException(path, $"file is {fileLength} bytes, shorter than the 8-byte header length");

        byte[] header;
        using (var stream = File.OpenRead(path))
        {
            Span<byte> lengthBytes = stackalloc byte[8];
            stream.ReadExactly(lengthBytes);
            ulong headerLength = BitConverter.ToUInt64(lengthBytes);
            if (headerLength > (ulong)(fileLength - 8))
                throw new SafetensorsFormatException(path, $"header length {headerLength} goes beyond the end of the file ({fileLength} bytes)");
            if (headerLength > MaxHeaderLength)
                throw new SafetensorsFormatException(path, $"header length {headerLength} exceeds the {MaxHeaderLength}-byte limit");
            header = new byte[headerLength];
            stream.ReadExactly(header);
        }
        long dataStart = 8 + header.Length;
        var (entries, metadata) = ParseHeader(path, header, fileLength - dataStart);

        if (fileLength == dataStart) return new SafetensorsFile(path, null, null, dataStart, entries, metadata);
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        var view = map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        return new SafetensorsFile(path, map, view, dataStart, entries, metadata);
    }

    /// <summary>A new CPU tensor with the data of <paramref name="name"/>, in the file's dtype.</summary>
    public Tensor Load(string name)
    {
        SafetensorsEntry entry = this[name];
        Tensor tensor = empty(entry.Shape, dtype: entry.DType.ToScalarType());
        if (entry.ByteLength > 0)
        {
            ObjectDisposedException.ThrowIf(_view is null && _base == null, this);
            Buffer.MemoryCopy(_base + _dataStart + entry.DataBegin, TensorMemory.Pointer(tensor), entry.ByteLength, entry.ByteLength);
        }
        return tensor;
    }

    /// <summary>Loads <paramref name="name"/> and converts it to <paramref name="dtype"/>.</summary>
    public Tensor Load(string name, ScalarType dtype)
    {
        Tensor t = Load(name);
        if (t.dtype == dtype) return t;
        using (t) return t.to(dtype);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        if (_view is not null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _view.Dispose();
        }
        _map?.Dispose();
    }

    private static (List<SafetensorsEntry>, Dictionary<string, string>) ParseHeader(string path, byte[] header, long dataLength)
    {
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
