using System.Text;
using Microsoft.Win32.SafeHandles;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.IO;

/// <summary>
/// A read-only PyTorch checkpoint in the ZIP format of <c>torch.save</c> (PyTorch 1.6 and later) that holds a state
/// dict: a dict or OrderedDict of names to tensors, such as BlinkDL's RWKV <c>.pth</c> files. Opening reads only the
/// ZIP records and the small members (<c>data.pkl</c>, <c>version</c>, <c>byteorder</c>) and checks everything there: the pickle runs in a restricted interpreter that
/// cannot call code (see the remarks), and every tensor's storage, offset, shape and strides are checked against the
/// bytes really present. Tensor bytes are then read with positional reads, only those of the tensor asked for,
/// straight into the destination's memory when its layout allows, so a 15 GB checkpoint is never held in memory.
/// </summary>
/// <remarks>
/// Accepted: stored (uncompressed) ZIP members, zip64 included; pickle protocols 2 to 5 limited to the opcodes
/// <c>torch.save</c> emits for a state dict; the globals <c>collections.OrderedDict</c>,
/// <c>torch._utils._rebuild_tensor_v2</c>, <c>torch._utils._rebuild_parameter</c> (a parameter reads as its tensor)
/// and the typed storages of float64, float32, float16, bfloat16, int64, int32, int16, int8, uint8 and bool;
/// little-endian data. Everything else (other globals such as <c>os.system</c>, other opcodes, compressed members,
/// the legacy non-ZIP format, big-endian data, non-tensor values) is refused with <see cref="PthFormatException"/>.
/// </remarks>
public sealed unsafe class PthFile : IDisposable
{
    /// <summary>The largest <c>data.pkl</c> accepted; a state dict of thousands of tensors needs a few megabytes.</summary>
    public const long MaxPickleLength = 100_000_000;

    /// <summary>The most dimensions a tensor may have; far more than any checkpoint uses, it bounds the work per tensor.</summary>
    public const int MaxDimensions = 64;

    // One read call moves at most this much (Linux caps a read near 2 GiB).
    private const int ReadChunk = 1 << 30;

    private SafeFileHandle? _handle;
    private readonly Dictionary<string, Placement> _byName;

    /// <summary>Where an entry's elements are in the file: its first element and how many elements its strides span.</summary>
    private sealed record Placement(PthEntry Entry, long FirstByte, long SpanElements);

    private PthFile(string path, SafeFileHandle handle, List<Placement> placements)
    {
        FilePath = path;
        _handle = handle;
        Entries = placements.Select(p => p.Entry).ToList();
        _byName = placements.ToDictionary(p => p.Entry.Name, StringComparer.Ordinal);
    }

    /// <summary>Path of the file.</summary>
    public string FilePath { get; }

    /// <summary>Tensor entries in the state dict's key order.</summary>
    public IReadOnlyList<PthEntry> Entries { get; }

    /// <summary>True when the file holds a tensor named <paramref name="name"/>.</summary>
    public bool Contains(string name) => _byName.ContainsKey(name);

    /// <summary>The entry for <paramref name="name"/>; throws <see cref="KeyNotFoundException"/> naming the file when absent.</summary>
    public PthEntry this[string name] => Find(name).Entry;

    /// <summary>
    /// Opens <paramref name="path"/> and validates the archive, the pickle and every tensor's placement; problems
    /// raise <see cref="PthFormatException"/> naming the file and the problem.
    /// </summary>
    public static PthFile Open(string path)
    {
        SafeFileHandle handle = File.OpenHandle(InputFile.Resolve(path), FileMode.Open, FileAccess.Read, FileShare.Read, FileOptions.RandomAccess);
        try
        {
            var zip = ZipDirectory.Read(path, handle);
            string archive = ArchiveName(path, zip);
            CheckSmallMembers(path, zip, archive);
            ZipMember pickleMember = zip.Find($"{archive}/data.pkl")!;
            byte[] pickle = zip.ReadSmall(pickleMember, MaxPickleLength);
            object? root = PthPickle.Run(pickle, path, pickleMember.Name);
            return new PthFile(path, handle, Place(path, zip, archive, root));
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>A new contiguous CPU tensor with the values of <paramref name="name"/>, in the stored dtype.</summary>
    public Tensor Load(string name)
    {
        Placement placement = Find(name);
        Tensor tensor = empty(placement.Entry.Shape, dtype: placement.Entry.DType);
        try { ReadStored(placement, tensor); }
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
    /// Copies tensor <paramref name="name"/> into <paramref name="destination"/>, which must have the same shape and
    /// may have any dtype (values are converted) and device. A contiguous CPU destination of the stored dtype is
    /// filled straight from the file; any other goes through one temporary CPU tensor. <paramref name="fingerprint"/>,
    /// when given, records the tensor's contiguous bytes in the stored dtype as part <paramref name="name"/> of this
    /// file's name (as <see cref="WeightFingerprint.AddBytes"/> would), so views hash like the values they show.
    /// </summary>
    /// <exception cref="ArgumentException">The destination's shape differs from the tensor's.</exception>
    public void ReadInto(string name, Tensor destination, WeightFingerprint? fingerprint = null)
    {
        Placement placement = Find(name);
        PthEntry entry = placement.Entry;
        if (!entry.Shape.SequenceEqual(destination.shape))
            throw new ArgumentException($"{FilePath}: tensor '{name}' has shape [{string.Join(", ", entry.Shape)}] but the destination has [{string.Join(", ", destination.shape)}].", nameof(destination));
        bool direct = destination.device_type == DeviceType.CPU && destination.is_contiguous() && destination.dtype == entry.DType;
        using var noGrad = no_grad();
        using Tensor? staging = direct ? null : empty(entry.Shape, dtype: entry.DType);
        Tensor target = staging ?? destination;
        ReadStored(placement, target);
        fingerprint?.AddMemory(Path.GetFileName(FilePath), name, entry.ElementCount == 0 ? IntPtr.Zero : (IntPtr)TensorMemory.Pointer(target), entry.ByteLength);
        if (staging is not null) destination.copy_(staging);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _handle?.Dispose();
        _handle = null;
    }

    /// <summary>Bytes per element of the dtypes a checkpoint may hold.</summary>
    internal static int ElementSize(ScalarType type) => type switch
    {
        ScalarType.Float64 or ScalarType.Int64 => 8,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        ScalarType.Int8 or ScalarType.Byte or ScalarType.Bool => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(type), type, "Not a checkpoint storage type."),
    };

    private Placement Find(string name) =>
        _byName.TryGetValue(name, out Placement? p) ? p : throw new KeyNotFoundException($"{FilePath}: no tensor named '{name}'.");

    // Fills a contiguous CPU tensor of the entry's dtype and shape. Contiguous entries are one read; strided ones read
    // the span their strides cover once and gather it with as_strided (the span lies inside the storage, whose bytes
    // were checked to be in the file, so a sparse view costs at most its storage's size).
    private void ReadStored(Placement placement, Tensor destination)
    {
        SafeFileHandle handle = _handle ?? throw new ObjectDisposedException(nameof(PthFile), $"{FilePath}: the file was closed.");
        PthEntry entry = placement.Entry;
        if (entry.ElementCount == 0) return;
        long elementSize = ElementSize(entry.DType);
        if (entry.IsContiguous)
        {
            ReadBytes(handle, placement.FirstByte, entry.ByteLength, TensorMemory.Pointer(destination));
            return;
        }
        using Tensor span = empty(placement.SpanElements, dtype: entry.DType);
        ReadBytes(handle, placement.FirstByte, placement.SpanElements * elementSize, TensorMemory.Pointer(span));
        using Tensor view = span.as_strided(entry.Shape, entry.Strides, 0);
        destination.copy_(view);
    }

    private void ReadBytes(SafeFileHandle handle, long offset, long length, byte* pointer)
    {
        for (long done = 0; done < length;)
        {
            int read = RandomAccess.Read(handle, new Span<byte>(pointer + done, (int)Math.Min(ReadChunk, length - done)), offset + done);
            if (read == 0) throw new PthFormatException(FilePath, $"the file ended early (at byte {offset + done}); it was shortened after it was opened");
            done += read;
        }
    }

    // torch.save puts every member under one folder named after the archive (the file's stem when it was saved).
    private static string ArchiveName(string path, ZipDirectory zip)
    {
        var pickles = zip.Members.Select(m => m.Name).Where(n => n.EndsWith("/data.pkl", StringComparison.Ordinal) && n.IndexOf('/') == n.Length - "/data.pkl".Length).ToList();
        if (pickles.Count == 0)
            throw new PthFormatException(path, zip.Find("data.pkl") is null
                ? "the archive has no <archive>/data.pkl member; it is not a torch.save checkpoint"
                : "the archive's data.pkl is not inside an archive folder as torch.save writes it");
        if (pickles.Count > 1) throw new PthFormatException(path, $"the archive has {pickles.Count} data.pkl members ({string.Join(", ", pickles)}); a checkpoint has one");
        return pickles[0][..pickles[0].IndexOf('/')];
    }

    private static void CheckSmallMembers(string path, ZipDirectory zip, string archive)
    {
        if (zip.Find($"{archive}/byteorder") is { } byteOrder)
        {
            string order = Encoding.ASCII.GetString(zip.ReadSmall(byteOrder, 16));
            if (order == "big") throw new PthFormatException(path, "the checkpoint was saved on a big-endian machine (byteorder 'big'); only little-endian data is read");
            if (order != "little") throw new PthFormatException(path, $"member '{byteOrder.Name}' says '{order}', neither 'little' nor 'big'");
        }
        foreach (string name in new[] { $"{archive}/version", $"{archive}/.data/version" })
        {
            if (zip.Find(name) is not { } version) continue;
            string text = Encoding.ASCII.GetString(zip.ReadSmall(version, 64)).TrimEnd('\n');
            if (text.Length == 0 || !text.All(char.IsAsciiDigit)) throw new PthFormatException(path, $"member '{name}' holds '{text}', not a format version number");
        }
    }

    // Checks that the pickle built a dict of tensors and places each one inside the bytes of its storage member.
    private static List<Placement> Place(string path, ZipDirectory zip, string archive, object? root)
    {
        if (root is not PthPickle.PickleDict dict)
            throw new PthFormatException(path, $"data.pkl holds {PthPickle.Describe(root)}, not a dict of tensors (a state dict)");
        var storageStart = new Dictionary<string, long>(StringComparer.Ordinal);
        var placements = new List<Placement>(dict.Items.Count);
        foreach (var (key, value) in dict.Items)
        {
            if (key is not string name) throw new PthFormatException(path, $"the state dict has {PthPickle.Describe(key)} as a key; tensor names are strings");
            if (value is not PthPickle.TensorRef tensor) throw new PthFormatException(path, $"state dict entry '{name}' is {PthPickle.Describe(value)}, not a tensor");
            PthPickle.StorageRef storage = tensor.Storage;
            long elementSize = ElementSize(storage.DType);
            if (!storageStart.TryGetValue(storage.Key, out long start))
            {
                string memberName = $"{archive}/data/{storage.Key}";
                ZipMember member = zip.Find(memberName)
                    ?? throw new PthFormatException(path, $"tensor '{name}' uses storage '{storage.Key}' but the archive has no member '{memberName}'");
                if (storage.Numel > member.Size / elementSize)
                    throw new PthFormatException(path, $"storage '{storage.Key}' declares {storage.Numel} elements of {storage.DType} ({elementSize} bytes each) but member '{memberName}' holds only {member.Size} bytes");
                storageStart[storage.Key] = start = zip.DataStart(member);
            }
            placements.Add(PlaceTensor(path, name, tensor, start, elementSize));
        }
        return placements;
    }

    private static Placement PlaceTensor(string path, string name, PthPickle.TensorRef tensor, long storageStart, long elementSize)
    {
        string where = $"tensor '{name}'";
        PthPickle.StorageRef storage = tensor.Storage;
        long[] shape = tensor.Size, strides = tensor.Stride;
        string layout = $"offset {tensor.Offset}, shape [{string.Join(", ", shape)}], strides [{string.Join(", ", strides)}]";
        if (shape.Length != strides.Length) throw new PthFormatException(path, $"{where} has {shape.Length} sizes but {strides.Length} strides");
        if (shape.Length > MaxDimensions) throw new PthFormatException(path, $"{where} has {shape.Length} dimensions, over the limit of {MaxDimensions}");
        if (tensor.Offset < 0) throw new PthFormatException(path, $"{where} has a negative storage offset ({layout})");
        if (shape.Any(s => s < 0)) throw new PthFormatException(path, $"{where} has a negative size ({layout})");
        if (strides.Any(s => s < 0)) throw new PthFormatException(path, $"{where} has a negative stride ({layout})");
        long count = 1, last = tensor.Offset;
        try
        {
            foreach (long s in shape) count = checked(count * s);
            checked { _ = count * elementSize; }
            if (count > 0)
                for (int d = 0; d < shape.Length; d++) last = checked(last + (shape[d] - 1) * strides[d]);
        }
        catch (OverflowException) { throw new PthFormatException(path, $"{where} has a layout whose size overflows ({layout})"); }
        if (count == 0 ? tensor.Offset > storage.Numel : last >= storage.Numel)
            throw new PthFormatException(path, $"{where} ({layout}) reaches element {(count == 0 ? tensor.Offset : last)}, past the end of storage '{storage.Key}' of {storage.Numel} elements");
        var entry = new PthEntry(name, storage.DType, shape, strides, tensor.Offset, storage.Key);
        return new Placement(entry, storageStart + tensor.Offset * elementSize, count == 0 ? 0 : last - tensor.Offset + 1);
    }
}
