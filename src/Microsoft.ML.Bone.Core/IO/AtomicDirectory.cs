namespace Microsoft.ML.Bone.IO;

/// <summary>
/// Writes a whole folder so that it appears complete or not at all: the files go into a temporary sibling folder,
/// which is renamed into place once every file is written. A kill leaves no partial output folder, and the next
/// write next to it removes the temporary one.
/// </summary>
public static class AtomicDirectory
{
    /// <summary>
    /// Calls <paramref name="writeInto"/> with a new temporary folder beside <paramref name="directory"/>, then puts it
    /// in place of <paramref name="directory"/>, which must not exist or be empty. On failure nothing is left behind.
    /// </summary>
    public static void Write(string directory, Action<string> writeInto)
    {
        string full = Path.GetFullPath(directory);
        if (Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any())
            throw new IOException($"{directory}: output directory exists and is not empty.");
        string temp = TempPaths.Sibling(full);
        try
        {
            Directory.CreateDirectory(temp);
            writeInto(temp);
            FaultInjection.BeforeCommit(temp, full);
            if (Directory.Exists(full)) Directory.Delete(full);
            Directory.Move(temp, full);
        }
        catch
        {
            if (Directory.Exists(temp)) Directory.Delete(temp, recursive: true);
            throw;
        }
    }
}
