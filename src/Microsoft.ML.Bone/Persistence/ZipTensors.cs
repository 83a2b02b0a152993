using Microsoft.ML.Bone.IO;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Persistence;

/// <summary>Safetensors blobs, files and byte arrays inside ML.NET model zips.</summary>
internal static class ZipTensors
{
    /// <summary>Writes tensors as a safetensors blob into a zip entry.</summary>
    public static void Save(ModelSaveContext ctx, string name, IEnumerable<KeyValuePair<string, Tensor>> tensors) =>
        MlNetInternals.SaveBinaryStream(ctx, name, w => SafetensorsWriter.Write(w.BaseStream, tensors));

    /// <summary>Copies a zip entry to <paramref name="path"/>; throws naming the entry when it is absent.</summary>
    public static void LoadFile(object ctx, string name, string path)
    {
        if (!MlNetInternals.TryLoadBinaryStream(ctx, name, r =>
            {
                using var file = File.Create(path);
                r.BaseStream.CopyTo(file);
            }))
            throw new InvalidDataException($"The model zip has no entry '{name}'.");
    }

    /// <summary>The bytes of a zip entry; throws naming the entry when it is absent.</summary>
    public static byte[] LoadBytes(object ctx, string name)
    {
        byte[]? bytes = null;
        if (!MlNetInternals.TryLoadBinaryStream(ctx, name, r =>
            {
                using var copy = new MemoryStream();
                r.BaseStream.CopyTo(copy);
                bytes = copy.ToArray();
            }))
            throw new InvalidDataException($"The model zip has no entry '{name}'.");
        return bytes!;
    }

    /// <summary>Reads a safetensors blob from a zip entry into CPU tensors.</summary>
    public static Dictionary<string, Tensor> Load(object ctx, string name)
    {
        string temp = TempPaths.NewScratchPath("zip-tensors-", ".safetensors");
        try
        {
            LoadFile(ctx, name, temp);
            using var file = SafetensorsFile.Open(temp);
            return file.Entries.ToDictionary(e => e.Name, e => file.Load(e.Name));
        }
        finally
        {
            File.Delete(temp);
        }
    }
}
