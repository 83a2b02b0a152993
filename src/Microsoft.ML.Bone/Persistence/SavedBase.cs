namespace Microsoft.ML.Bone.Persistence;

/// <summary>
/// The base model of a model zip being loaded: extracted from the zip into a temporary directory when it was embedded
/// (deleted on dispose), otherwise the recorded directory (or the one given to <c>LoadModel</c>) after its weights are
/// checked against the recorded SHA-256.
/// </summary>
internal sealed class SavedBase : IDisposable
{
    private readonly string? _temp;

    private SavedBase(string directory, string? temp)
    {
        Directory = directory;
        _temp = temp;
    }

    /// <summary>Where the base model's files are.</summary>
    public string Directory { get; }

    /// <summary>Resolves the base; <paramref name="embeddedFiles"/> maps zip entries to file names for the embedded case.</summary>
    public static SavedBase Open(object ctx, bool embedded, string recordedDirectory, IReadOnlyDictionary<string, string> sha256, IEnumerable<(string Entry, string File)> embeddedFiles)
    {
        if (!embedded)
        {
            string directory = BoneLoaders.BaseModelPath ?? recordedDirectory;
            new BaseModelReference(recordedDirectory, sha256).Verify(directory);
            return new SavedBase(directory, null);
        }
        string temp = System.IO.Directory.CreateTempSubdirectory("bone-load-").FullName;
        try
        {
            foreach (var (entry, file) in embeddedFiles) ZipTensors.LoadFile(ctx, entry, Path.Combine(temp, file));
            return new SavedBase(temp, temp);
        }
        catch
        {
            System.IO.Directory.Delete(temp, recursive: true);
            throw;
        }
    }

    public void Dispose()
    {
        if (_temp is not null) System.IO.Directory.Delete(_temp, recursive: true);
    }
}
