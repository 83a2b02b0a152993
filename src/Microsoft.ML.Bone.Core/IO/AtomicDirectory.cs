namespace Microsoft.ML.Bone.IO;

/// <summary>
/// Writes a whole folder so that it appears complete or not at all: the files go into a temporary sibling folder,
/// which is renamed into place once every file is written. A kill leaves no partial output folder, and the next
/// write next to it removes the temporary one.
/// </summary>
public static class AtomicDirectory
{
    /// <summary>Whether <paramref name="directory"/> does not exist or has nothing in it.</summary>
    public static bool IsMissingOrEmpty(string directory) => !Directory.Exists(directory) || !Directory.EnumerateFileSystemEntries(directory).Any();

    /// <summary>
    /// Throws unless <paramref name="directory"/> is missing or empty: commands call it before their work, so that a
    /// full output folder fails at once rather than after it; <see cref="Write"/> checks again.
    /// </summary>
    public static void CheckMissingOrEmpty(string directory)
    {
        if (!IsMissingOrEmpty(directory)) throw new IOException($"{directory}: output directory exists and is not empty.");
    }

    /// <summary>
    /// Calls <paramref name="writeInto"/> with a new temporary folder beside <paramref name="directory"/>, then puts it
    /// in place of <paramref name="directory"/>, which must not exist or be empty. On failure nothing is left behind.
    /// </summary>
    public static void Write(string directory, Action<string> writeInto)
    {
        CheckMissingOrEmpty(directory);
        string full = Path.GetFullPath(directory);
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
