using System.Text;

namespace Microsoft.ML.Bone.Tests.IO;

/// <summary>
/// Writes and reads safetensors bytes directly from the format description (8-byte little-endian header length,
/// JSON header, raw little-endian data), independently of the product's reader and writer.
/// </summary>
internal static class HandWrittenSafetensors
{
    public sealed record F32Tensor(string Name, long[] Shape, float[] Data);

    public static void Write(string path, IEnumerable<F32Tensor> tensors, string? metadataJson = "{\"format\":\"pt\"}")
    {
        var header = new StringBuilder("{");
        if (metadataJson is not null) header.Append("\"__metadata__\":").Append(metadataJson);
        long offset = 0;
        var list = tensors.ToList();
        foreach (var t in list)
        {
            if (header.Length > 1) header.Append(',');
            long bytes = 4L * t.Data.Length;
            header.Append($"\"{t.Name}\":{{\"dtype\":\"F32\",\"shape\":[{string.Join(",", t.Shape)}],\"data_offsets\":[{offset},{offset + bytes}]}}");
            offset += bytes;
        }
        header.Append('}');
        using var w = new BinaryWriter(File.Create(path));
        byte[] json = Encoding.UTF8.GetBytes(header.ToString());
        w.Write((ulong)json.Length);
        w.Write(json);
        foreach (var t in list) foreach (float v in t.Data) w.Write(v);
    }

    /// <summary>The header JSON of a safetensors file and the offset where its data starts.</summary>
    public static (System.Text.Json.JsonDocument Header, long DataStart) ReadHeader(string path)
    {
        using var r = new BinaryReader(File.OpenRead(path));
        ulong n = r.ReadUInt64();
        byte[] json = r.ReadBytes(checked((int)n));
        return (System.Text.Json.JsonDocument.Parse(json), 8 + (long)n);
    }

    /// <summary>The float32 values of one tensor, read through the header by hand.</summary>
    public static float[] ReadF32(string path, string name)
    {
        var (header, start) = ReadHeader(path);
        var entry = header.RootElement.GetProperty(name);
        Assert.AreEqual("F32", entry.GetProperty("dtype").GetString());
        long begin = entry.GetProperty("data_offsets")[0].GetInt64(), end = entry.GetProperty("data_offsets")[1].GetInt64();
        using var s = File.OpenRead(path);
        s.Position = start + begin;
        var bytes = new byte[end - begin];
        s.ReadExactly(bytes);
        var values = new float[bytes.Length / 4];
        Buffer.BlockCopy(bytes, 0, values, 0, bytes.Length);
        return values;
    }
}
