namespace Microsoft.ML.Bone.IO;

/// <summary>
/// Writes files so that readers see either the old file or the complete new one, never half of it: a kill at any moment
/// leaves the old file intact, and the temporary file it leaves is removed by the next write to the same path.
/// </summary>
public static class AtomicFile
{
    /// <summary>
    /// Calls <paramref name="write"/> on a temporary file next to <paramref name="path"/> and renames it over
    /// <paramref name="path"/> once complete. On failure the temporary file is deleted and the old file kept.
    /// </summary>
    public static void Write(string path, Action<Stream> write)
    {
        string full = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: directory not found (writing {Path.GetFileName(full)}).");
        string temp = TempPaths.Sibling(full);
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            FaultInjection.BeforeCommit(temp, full);
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            File.Delete(temp);
            throw;
        }
    }
}
