namespace Microsoft.ML.Bone.Tokenization;

/// <summary>
/// A tokenizer's files by name, held in memory so that a saved model carries them and loads without the original
/// folder. <see cref="Source"/> names where they came from in errors.
/// </summary>
public sealed class TokenizerFiles(IReadOnlyDictionary<string, byte[]> files, string source)
{
    /// <summary>The files: name → bytes.</summary>
    public IReadOnlyDictionary<string, byte[]> Files { get; } = files;

    /// <summary>Where the files were read from (a folder, or "model zip").</summary>
    public string Source { get; } = source;

    /// <summary>True when <paramref name="name"/> is present.</summary>
    public bool Has(string name) => Files.ContainsKey(name);

    /// <summary>The bytes of <paramref name="name"/>; throws naming the file when absent.</summary>
    public byte[] Bytes(string name) => Files.TryGetValue(name, out byte[]? b) ? b : throw new FileNotFoundException($"{Describe(name)}: not found.");

    /// <summary>How errors name file <paramref name="name"/>.</summary>
    public string Describe(string name) => Path.Combine(Source, name);

    /// <summary>Reads the existing files among <paramref name="names"/> from <paramref name="directory"/>.</summary>
    public static TokenizerFiles FromDirectory(string directory, IEnumerable<string> names) =>
        new(names.Where(n => File.Exists(Path.Combine(directory, n))).ToDictionary(n => n, n => IO.InputFile.ReadAllBytes(Path.Combine(directory, n))), directory);
}
