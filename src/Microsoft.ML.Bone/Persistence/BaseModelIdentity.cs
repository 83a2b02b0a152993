using Microsoft.ML.Bone.IO;

namespace Microsoft.ML.Bone.Persistence;

/// <summary>
/// How a saved model knows its base is the one it was trained on. While a base is loaded, every tensor read and
/// config.json are hashed (SHA-256, in 64 MiB pieces on all cores: about a second per 2 GB per core, no extra
/// reading); the zip records each file's size and digest. Loading the zip first compares sizes (instant), then
/// loads the base and compares digests, refusing a base whose weights or config changed with an error naming the file.
/// </summary>
internal static class BaseModelIdentity
{
    /// <summary>The record of the files in <paramref name="fingerprint"/>, found in <paramref name="path"/> (a folder or a single file).</summary>
    public static Dictionary<string, FileIdentity> Record(string path, WeightFingerprint fingerprint) =>
        fingerprint.Digests().ToDictionary(f => f.Key, f => new FileIdentity(new FileInfo(IO.InputFile.Resolve(FileIn(path, f.Key))).Length, f.Value), StringComparer.Ordinal);

    /// <summary>Throws, naming the file, when one of the recorded files is missing or has another size.</summary>
    public static void CheckSizes(string path, IReadOnlyDictionary<string, FileIdentity> files)
    {
        if (!Directory.Exists(path) && !File.Exists(path))
            throw new DirectoryNotFoundException($"The base model '{path}' of this saved model does not exist; pass the model's location to mlContext.Bone.LoadModel(path, out schema, baseModelPath: ...).");
        foreach (var (name, identity) in files)
        {
            string file = File.Exists(path) && files.Count == 1 ? path : FileIn(path, name);
            if (!File.Exists(file))
                throw new InvalidDataException($"The base model in '{path}' has no '{name}', which the saved model was trained on.");
            long size = new FileInfo(IO.InputFile.Resolve(file)).Length;
            if (size != identity.Size)
                throw new InvalidDataException($"The base model file '{file}' has {size} bytes, but the saved model was trained on one of {identity.Size} bytes: it is a different base model.");
        }
    }

    /// <summary>Throws, naming the file, when the digests of the base just loaded differ from the recorded ones.</summary>
    public static void CheckDigests(string path, IReadOnlyDictionary<string, FileIdentity> files, WeightFingerprint loaded)
    {
        IReadOnlyDictionary<string, string> digests = loaded.Digests();
        if (File.Exists(path) && files.Count == 1 && digests.Count == 1)
        {
            // A single-file base is known by its content alone, whatever it is called now.
            var (expected, found) = (files.Values.Single().Sha256, digests.Values.Single());
            if (found != expected)
                throw new InvalidDataException($"The base model file '{path}' differs from the one the saved model was trained on (content SHA-256 {found}, expected {expected}): it is a different base model.");
            return;
        }
        foreach (var (name, identity) in files)
        {
            if (!digests.TryGetValue(name, out string? found))
                throw new InvalidDataException($"The base model in '{path}' no longer has the tensors of '{name}' that the saved model was trained on.");
            if (found != identity.Sha256)
                throw new InvalidDataException($"The base model file '{FileIn(path, name)}' differs from the one the saved model was trained on (content SHA-256 {found}, expected {identity.Sha256}): it is a different base model.");
        }
        foreach (string extra in digests.Keys.Except(files.Keys))
            throw new InvalidDataException($"The base model in '{path}' has a file '{extra}' the saved model was not trained with.");
    }

    // A single-file base (llama2.c .bin) may have been renamed: its only entry is the file itself.
    private static string FileIn(string path, string name) => File.Exists(path) ? path : System.IO.Path.Combine(path, name);
}
