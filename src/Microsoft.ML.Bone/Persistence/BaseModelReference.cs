using System.Security.Cryptography;

namespace Microsoft.ML.Bone.Persistence;

/// <summary>
/// Where a fine-tuned model's frozen base came from: its directory and the SHA-256 of every weight file, so a
/// saved model refuses to load on top of different weights.
/// </summary>
internal sealed record BaseModelReference(string Directory, IReadOnlyDictionary<string, string> Sha256)
{
    /// <summary>Hashes the weight files (<c>*.safetensors</c>) of <paramref name="directory"/>, or a single weight file.</summary>
    public static BaseModelReference Of(string directory)
    {
        var hashes = new SortedDictionary<string, string>(StringComparer.Ordinal);
        IEnumerable<string> files = File.Exists(directory) ? [directory] : System.IO.Directory.EnumerateFiles(directory, "*.safetensors").Order(StringComparer.Ordinal);
        foreach (string file in files)
        {
            using var stream = File.OpenRead(file);
            hashes[Path.GetFileName(file)] = Convert.ToHexStringLower(SHA256.HashData(stream));
        }
        return new BaseModelReference(Path.GetFullPath(directory), hashes);
    }

    /// <summary>Throws, naming the file, unless <paramref name="directory"/> holds exactly the recorded weights.</summary>
    public void Verify(string directory)
    {
        if (!System.IO.Directory.Exists(directory) && !File.Exists(directory))
            throw new DirectoryNotFoundException($"The base model directory '{directory}' of this saved model does not exist; pass the model's location to mlContext.Bone.LoadModel(path, baseModelPath: ...).");
        BaseModelReference actual = Of(directory);
        if (File.Exists(directory))
        {
            // A single-file base (llama2.c .bin) may have been renamed; its content is what counts.
            string expected = Sha256.Values.Single(), found = actual.Sha256.Values.Single();
            if (found != expected)
                throw new InvalidDataException($"The base model file '{directory}' has SHA-256 {found}, but the saved model was trained on weights with SHA-256 {expected}: it is a different base model.");
            return;
        }
        foreach (var (file, hash) in Sha256)
        {
            if (!actual.Sha256.TryGetValue(file, out string? found))
                throw new InvalidDataException($"The base model in '{directory}' has no '{file}', which the saved model was trained on.");
            if (found != hash)
                throw new InvalidDataException($"The base model file '{Path.Combine(directory, file)}' has SHA-256 {found}, but the saved model was trained on weights with SHA-256 {hash}: it is a different base model.");
        }
        foreach (string extra in actual.Sha256.Keys.Except(Sha256.Keys))
            throw new InvalidDataException($"The base model in '{directory}' has a weight file '{extra}' the saved model was not trained with.");
    }
}
