using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Microsoft.ML.Bone.IO;

/// <summary>
/// Opens input files as regular files, after following symbolic links (a Hugging Face hub cache is all links: a
/// link's own size is the length of its target's name, not of the file). Anything else (a folder, a FIFO, a device, a
/// socket) is refused with an error naming it, before a read that could block forever or never end.
/// </summary>
public static class InputFile
{
    /// <summary>The regular file <paramref name="path"/> names, links followed; an error for anything else.</summary>
    public static string Resolve(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        string full = Path.GetFullPath(path);
        FileSystemInfo? target;
        try { target = new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true); }
        catch (FileNotFoundException) { throw new FileNotFoundException($"{path}: file not found.", path); }
        catch (IOException e) { throw new IOException($"{path}: cannot follow the link ({e.Message}).", e); }
        string real = target?.FullName ?? full;
        if (Directory.Exists(real)) throw new IOException($"{path}: is a directory, not a file.");
        if (!File.Exists(real))
            throw new FileNotFoundException(target is null ? $"{path}: file not found." : $"{path}: a link to {real}, which does not exist.", path);
        if (!OperatingSystem.IsWindows() && UnixFileType(real) is { } type && type != "regular file")
            throw new IOException($"{path}: is a {type}, not a regular file; give the file itself.");
        return real;
    }

    /// <summary><see cref="File.ReadAllText(string)"/> of the regular file <paramref name="path"/> names.</summary>
    public static string ReadAllText(string path) => File.ReadAllText(Resolve(path));

    /// <summary><see cref="File.ReadAllBytes(string)"/> of the regular file <paramref name="path"/> names.</summary>
    public static byte[] ReadAllBytes(string path) => File.ReadAllBytes(Resolve(path));

    /// <summary>A read-only stream on the regular file <paramref name="path"/> names.</summary>
    public static FileStream OpenRead(string path) => File.OpenRead(Resolve(path));

    /// <summary>The lines of the regular file <paramref name="path"/> names.</summary>
    public static IEnumerable<string> ReadLines(string path) => File.ReadLines(Resolve(path));

    /// <summary>A read-only handle for positional reads on the regular file <paramref name="path"/> names.</summary>
    public static SafeFileHandle OpenHandle(string path, FileOptions options = FileOptions.RandomAccess) =>
        File.OpenHandle(Resolve(path), FileMode.Open, FileAccess.Read, FileShare.Read, options);

    // .NET reports FIFOs and devices as ordinary empty files, so the type comes from stat(2) through the runtime's own
    // native shim, whose FileStatus starts {int Flags; int Mode; ...} with the portable S_IF* type bits.
    private static string? UnixFileType(string path)
    {
        Span<byte> status = stackalloc byte[512];
        int result;
        try { result = SystemNativeStat(path, ref MemoryMarshal.GetReference(status)); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { return null; }
        if (result != 0) return null;
        int mode = BitConverter.ToInt32(status[4..8]);
        return (mode & 0xF000) switch
        {
            0x8000 => "regular file",
            0x4000 => "directory",
            0x1000 => "FIFO (named pipe)",
            0x2000 => "character device",
            0x6000 => "block device",
            0xC000 => "socket",
            _ => null,
        };
    }

    [DllImport("libSystem.Native", EntryPoint = "SystemNative_Stat", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static extern int SystemNativeStat([MarshalAs(UnmanagedType.LPUTF8Str)] string path, ref byte status);
}
