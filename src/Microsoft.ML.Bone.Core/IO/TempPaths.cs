using System.Diagnostics;

namespace Microsoft.ML.Bone.IO;

/// <summary>
/// Names for temporary files and folders that a killed process cannot leave behind for good. Every name carries the
/// writing process's id; the next run that writes to the same place deletes the leftovers of processes that no longer
/// run. Two kinds: siblings of a destination (<c>.NAME.tmp-PID-GUID</c>, renamed over it when complete) and this
/// process's scratch folder under the system temp folder (<c>bone-PID</c>, deleted at exit).
/// </summary>
public static class TempPaths
{
    private const string SiblingMarker = ".tmp-";
    private static readonly Lazy<string> Scratch = new(CreateScratch, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>This process's scratch folder (created on first use; stale ones of ended processes are removed then).</summary>
    public static string ProcessDirectory => Scratch.Value;

    /// <summary>A new unique path inside <see cref="ProcessDirectory"/>.</summary>
    public static string NewScratchPath(string prefix, string extension = "") =>
        Path.Combine(ProcessDirectory, $"{prefix}{Guid.NewGuid():N}{extension}");

    /// <summary>
    /// A temporary path next to <paramref name="destination"/> (same folder, so the final rename is atomic), after
    /// deleting the temporaries that ended processes left next to it.
    /// </summary>
    public static string Sibling(string destination)
    {
        string full = Path.GetFullPath(destination);
        string directory = Path.GetDirectoryName(full)!;
        string name = Path.GetFileName(full);
        RemoveStaleSiblings(directory, name);
        return Path.Combine(directory, $".{name}{SiblingMarker}{Environment.ProcessId}-{Guid.NewGuid():N}");
    }

    /// <summary>Deletes <c>.NAME.tmp-PID-*</c> files and folders in <paramref name="directory"/> whose process has ended.</summary>
    public static void RemoveStaleSiblings(string directory, string name) => RemoveEndedSiblings(directory, $".{name}{SiblingMarker}*");

    /// <summary>
    /// Deletes every <c>.*.tmp-PID-*</c> file and folder in <paramref name="directory"/> whose process has ended, whatever
    /// its destination's name: for folders whose entries are named by a counter (checkpoints), where a killed
    /// write's name may never be written again.
    /// </summary>
    public static void RemoveAllStaleSiblings(string directory) => RemoveEndedSiblings(directory, $".*{SiblingMarker}*");

    // The writer's process id follows the last marker: ".NAME.tmp-PID-GUID".
    private static void RemoveEndedSiblings(string directory, string pattern)
    {
        if (!Directory.Exists(directory)) return;
        foreach (string entry in Directory.EnumerateFileSystemEntries(directory, pattern))
        {
            string name = Path.GetFileName(entry);
            string rest = name[(name.LastIndexOf(SiblingMarker, StringComparison.Ordinal) + SiblingMarker.Length)..];
            int dash = rest.IndexOf('-');
            if (dash > 0 && int.TryParse(rest[..dash], out int pid) && !IsRunning(pid)) Delete(entry);
        }
    }

    /// <summary>Deletes the scratch folders (<c>TMPDIR/bone-PID</c>) of processes that have ended; the CLI calls it at start.</summary>
    public static void RemoveStaleScratch()
    {
        string root = Path.GetTempPath();
        if (!Directory.Exists(root)) return;
        try
        {
            foreach (string stale in Directory.EnumerateDirectories(root, "bone-*"))
                if (int.TryParse(Path.GetFileName(stale)["bone-".Length..], out int pid) && !IsRunning(pid)) Delete(stale);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // Best effort: an unreadable temp folder only means leftovers stay.
        }
    }

    private static string CreateScratch()
    {
        string root = Path.GetTempPath();
        RemoveStaleScratch();
        string mine = Path.Combine(root, $"bone-{Environment.ProcessId}");
        Directory.CreateDirectory(mine);
        AppDomain.CurrentDomain.ProcessExit += (_, _) => Delete(mine);
        return mine;
    }

    private static bool IsRunning(int pid)
    {
        if (pid == Environment.ProcessId) return true;
        if (OperatingSystem.IsLinux()) return Directory.Exists($"/proc/{pid}");
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException) { return false; }
        catch (InvalidOperationException) { return false; }
    }

    private static void Delete(string path)
    {
        // Best effort: another process may be removing the same leftovers, or a file may be read-only.
        try
        {
            if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
            else File.Delete(path);
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
    }
}
