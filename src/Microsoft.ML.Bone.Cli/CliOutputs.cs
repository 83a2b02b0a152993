namespace Microsoft.ML.Bone.Cli;

/// <summary>
/// Checks a command's output files before it does any work, so that a mistake costs a second, not a training run:
/// the folder exists and takes writes, the path is not a folder, and it is none of the command's inputs.
/// </summary>
internal static class CliOutputs
{
    /// <summary>A training command's <c>--out</c> zip and <c>--plot</c> PNG (default: beside the zip), checked; returns the PNG's path.</summary>
    public static string CheckModelAndPlot(string zip, string? plot, IReadOnlyList<(string Option, string? Path)> inputs)
    {
        string png = plot ?? Path.ChangeExtension(zip, ".loss.png");
        CheckFile("--out", zip, inputs);
        CheckFile("--plot", png, [.. inputs, ("--out", zip)]);
        return png;
    }

    public static void CheckFile(string option, string path, IEnumerable<(string Option, string? Path)> inputs)
    {
        string full = Path.GetFullPath(path);
        if (Directory.Exists(full)) throw new IOException($"{option} {path}: is a directory; give a file name.");
        string folder = Path.GetDirectoryName(full)!;
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{option} {path}: the folder {folder} does not exist.");
        foreach (var (inputOption, input) in inputs)
            if (input is not null && SamePath(full, input))
                throw new ArgumentException($"{option} {path}: is also {inputOption}; writing it would destroy that input. Give another path.");
        CheckWritableFolder(option, path, folder);
    }

    /// <summary>Creates and deletes a probe file in <paramref name="folder"/>; an error names <paramref name="option"/>.</summary>
    public static void CheckWritableFolder(string option, string path, string folder)
    {
        string probe = Path.Combine(folder, $".bone-write-check-{Environment.ProcessId}-{Guid.NewGuid():N}");
        try
        {
            using (File.Create(probe, 1, FileOptions.DeleteOnClose)) { }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"{option} {path}: cannot write in {folder} ({e.Message}).", e);
        }
    }

    /// <summary>Writes a secondary output after the main one was saved; a failure says what was saved.</summary>
    public static void AfterSaving(string saved, string what, string path, Action write)
    {
        try { write(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"saved {saved}, but writing the {what} {path} failed: {e.Message}", e);
        }
    }

    private static bool SamePath(string output, string input)
    {
        string other = Path.GetFullPath(input);
        if (string.Equals(output, other, OperatingSystem.IsWindows() ? StringComparison.OrdinalIgnoreCase : StringComparison.Ordinal)) return true;
        // The same file under another name (a symbolic or hard link): compare what the names resolve to.
        try
        {
            var a = new FileInfo(output);
            var b = new FileInfo(other);
            if (!a.Exists || !b.Exists) return false;
            string ra = a.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? a.FullName;
            string rb = b.ResolveLinkTarget(returnFinalTarget: true)?.FullName ?? b.FullName;
            return ra == rb;
        }
        catch (IOException) { return false; }
    }
}
