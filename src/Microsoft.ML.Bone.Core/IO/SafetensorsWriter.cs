using System.Text;
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.IO;

/// <summary>The value to save for tensor <paramref name="name"/> in place of <paramref name="value"/> (same shape and dtype).</summary>
public delegate Tensor WeightTransform(string name, Tensor value);

/// <summary>Writes <c>.safetensors</c> files.</summary>
public static class SafetensorsWriter
{
    /// <summary>
    /// Writes <paramref name="tensors"/> to <paramref name="path"/>, streaming one tensor at a time from contiguous CPU
    /// memory. As the reference implementation does, the header is padded with spaces to a multiple of 8 bytes and the
    /// data is ordered by element size (largest first), then by name, so every tensor starts at a multiple of its
    /// element size. The file is written to a temporary name and renamed into place.
    /// </summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null) =>
        Write(path, tensors, null, metadata);

    /// <summary>
    /// Writes <paramref name="tensors"/> with each one's bytes taken from <paramref name="transform"/>(name, tensor),
    /// computed just before it is written and disposed right after, so a transformed copy of a whole model (e.g. with
    /// adapters merged) never exists in memory at once. The transform must keep each tensor's shape and dtype.
    /// </summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors, WeightTransform? transform, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = Checked(tensors);
        byte[] header = BuildHeader(list, metadata);
        AtomicFile.Write(path, stream => WriteAll(stream, header, list, transform));
    }

    /// <summary>Writes the same bytes as <see cref="Write(string, IEnumerable{KeyValuePair{string, Tensor}}, IReadOnlyDictionary{string, string}?)"/> to a stream.</summary>
    public static void Write(Stream stream, IEnumerable<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var list = Checked(tensors);
        WriteAll(stream, BuildHeader(list, metadata), list, null);
    }

    private static List<KeyValuePair<string, Tensor>> Checked(IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        var list = tensors.ToList();
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, _) in list)
        {
            if (name == "__metadata__") throw new ArgumentException("'__metadata__' cannot be a tensor name.");
            if (!names.Add(name)) throw new ArgumentException($"Tensor '{name}' is given twice.");
        }
        // Largest elements first keeps every offset aligned to its element size (readers may map the data in place).
        return [.. list.OrderByDescending(p => SafetensorsDTypes.FromScalarType(p.Value.dtype).ElementSize()).ThenBy(p => p.Key, StringComparer.Ordinal)];
    }

    private static void WriteAll(Stream stream, byte[] header, List<KeyValuePair<string, Tensor>> tensors, WeightTransform? transform)
    {
        Span<byte> length = stackalloc byte[8];
        BitConverter.TryWriteBytes(length, (ulong)header.Length);
        stream.Write(length);
        stream.Write(header);
        foreach (var (name, tensor) in tensors)
        {
            if (transform is null)
            {
                TensorMemory.WriteTo(stream, tensor);
                continue;
            }
            using var scope = NewDisposeScope();
            Tensor value = transform(name, tensor);
            if (value.dtype != tensor.dtype || !value.shape.SequenceEqual(tensor.shape))
                throw new InvalidOperationException($"The transform of '{name}' changed it from {tensor.dtype} [{string.Join(", ", tensor.shape)}] to {value.dtype} [{string.Join(", ", value.shape)}].");
            TensorMemory.WriteTo(stream, value);
        }
    }

    private static byte[] BuildHeader(List<KeyValuePair<string, Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                json.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) json.WriteString(k, v);
                json.WriteEndObject();
            }
            long offset = 0;
            foreach (var (name, tensor) in tensors)
            {
                SafetensorsDType dtype = SafetensorsDTypes.FromScalarType(tensor.dtype);
                long bytes = tensor.numel() * dtype.ElementSize();
                json.WriteStartObject(name);
                json.WriteString("dtype", dtype.ToString());
                json.WriteStartArray("shape");
                foreach (long d in tensor.shape) json.WriteNumberValue(d);
                json.WriteEndArray();
                json.WriteStartArray("data_offsets");
                json.WriteNumberValue(offset);
                json.WriteNumberValue(offset + bytes);
                json.WriteEndArray();
                json.WriteEndObject();
                offset += bytes;
            }
            json.WriteEndObject();
        }
        int padding = (int)((8 - buffer.Length % 8) % 8);
        for (int i = 0; i < padding; i++) buffer.WriteByte((byte)' ');
        return buffer.ToArray();
    }
}
