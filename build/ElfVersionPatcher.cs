// Marks one GNU symbol-version requirement of an ELF shared object as weak (VER_FLG_WEAK).
//
// Why: libLibTorchSharp.so (TorchSharp 0.107) is linked against GCC 13's libstdc++ and records a need for
// GLIBCXX_3.4.32, which Debian 12's libstdc++ (GLIBCXX_3.4.30) lacks, so the library refuses to load.
// The only symbol bound to that version is std::ios_base_library_init(), which has no relocation and is
// never called. A weak version need lets the dynamic loader continue when the version is missing.
//
// This file is compiled twice: by MSBuild's RoslynCodeTaskFactory (the task class at the bottom) and by the
// test project with ELF_PATCHER_STANDALONE defined (the patcher alone). Keep it free of other dependencies.
using System;
using System.Collections.Generic;
using System.IO;
using System.Text;

public enum ElfPatchOutcome { Patched, AlreadyWeak }

public sealed class ElfPatchException : Exception
{
    public ElfPatchException(string message) : base(message) { }
}

public static class ElfVersionPatcher
{
    private const uint ShtDynsym = 11;
    private const uint ShtGnuVerneed = 0x6ffffffe;
    private const uint ShtGnuVersym = 0x6fffffff;
    private const ushort VerFlgWeak = 2;

    /// <summary>True when the text of a libstdc++ image names the given version (e.g. GLIBCXX_3.4.32).</summary>
    public static bool LibraryDefinesVersion(string libraryPath, string version)
    {
        byte[] image = File.ReadAllBytes(libraryPath);
        byte[] needle = Encoding.ASCII.GetBytes(version + "\0");
        return IndexOf(image, needle) >= 0;
    }

    /// <summary>
    /// Sets VER_FLG_WEAK on the Vernaux entry named <paramref name="version"/>, after checking that every dynamic
    /// symbol bound to that version is one of <paramref name="allowedSymbols"/>. Writes through a temporary file
    /// and a rename, so the library is never left half-written.
    /// </summary>
    public static ElfPatchOutcome MarkVersionNeedWeak(string path, string version, IReadOnlyCollection<string> allowedSymbols)
    {
        byte[] image = File.ReadAllBytes(path);
        ElfPatchOutcome outcome = MarkVersionNeedWeak(image, path, version, allowedSymbols);
        if (outcome == ElfPatchOutcome.Patched)
        {
            string temp = path + ".patching";
            File.WriteAllBytes(temp, image);
            File.Replace(temp, path, null);
        }
        return outcome;
    }

    /// <summary>In-memory form of <see cref="MarkVersionNeedWeak(string,string,IReadOnlyCollection{string})"/>.</summary>
    public static ElfPatchOutcome MarkVersionNeedWeak(byte[] image, string name, string version, IReadOnlyCollection<string> allowedSymbols)
    {
        Fail(image.Length < 64 || image[0] != 0x7f || image[1] != (byte)'E' || image[2] != (byte)'L' || image[3] != (byte)'F',
            name, "is not an ELF file");
        Fail(image[4] != 2, name, "is not a 64-bit ELF file (EI_CLASS != ELFCLASS64)");
        Fail(image[5] != 1, name, "is not a little-endian ELF file (EI_DATA != ELFDATA2LSB)");

        ulong shoff = U64(image, 0x28, name);
        ushort shentsize = U16(image, 0x3A, name);
        ushort shnum = U16(image, 0x3C, name);
        Fail(shentsize != 64, name, $"has section headers of {shentsize} bytes, expected 64");
        Fail(shoff == 0 || shoff + (ulong)shnum * 64 > (ulong)image.Length, name, "has a section header table outside the file");

        var sections = new List<Section>();
        for (int i = 0; i < shnum; i++)
        {
            int h = checked((int)shoff + i * 64);
            sections.Add(new Section(U32(image, h + 4, name), U64(image, h + 0x18, name), U64(image, h + 0x20, name), U32(image, h + 0x28, name), U32(image, h + 0x2C, name)));
        }

        Section verneed = Single(sections, ShtGnuVerneed, name, ".gnu.version_r (SHT_GNU_verneed)");
        Section versym = Single(sections, ShtGnuVersym, name, ".gnu.version (SHT_GNU_versym)");
        Section dynsym = Single(sections, ShtDynsym, name, ".dynsym");
        Fail(verneed.Link >= sections.Count || dynsym.Link >= sections.Count, name, "has a section link out of range");
        Section verStrings = sections[(int)verneed.Link];
        Section symStrings = sections[(int)dynsym.Link];
        foreach (Section s in new[] { verneed, versym, dynsym, verStrings, symStrings })
            Fail(s.Offset + s.Size > (ulong)image.Length, name, "has a section that extends beyond the end of the file");

        // Walk Verneed -> Vernaux chains; find the entry for `version`.
        int auxOffset = -1;
        ushort versionIndex = 0;
        int need = (int)verneed.Offset;
        for (uint n = 0; n < verneed.Info; n++)
        {
            ushort count = U16(image, need + 2, name);
            int aux = need + (int)U32(image, need + 8, name);
            for (int a = 0; a < count; a++)
            {
                Fail(aux < (int)verneed.Offset || aux + 16 > (int)(verneed.Offset + verneed.Size), name, "has a Vernaux entry outside .gnu.version_r");
                string auxName = CString(image, (int)verStrings.Offset + (int)U32(image, aux + 8, name), name);
                if (auxName == version)
                {
                    Fail(auxOffset >= 0, name, $"lists the version need {version} twice");
                    auxOffset = aux;
                    versionIndex = U16(image, aux + 6, name);
                }
                uint nextAux = U32(image, aux + 12, name);
                if (nextAux == 0) break;
                aux += (int)nextAux;
            }
            uint next = U32(image, need + 12, name);
            if (next == 0) break;
            need += (int)next;
        }
        Fail(auxOffset < 0, name, $"does not require {version}; this TorchSharp build is not the one the fix was written for");

        // Every dynamic symbol bound to that version must be one we know is never called.
        int symbolCount = (int)(dynsym.Size / 24);
        Fail(versym.Size / 2 != (ulong)symbolCount, name, ".gnu.version and .dynsym disagree on the number of symbols");
        var bound = new List<string>();
        for (int i = 0; i < symbolCount; i++)
        {
            ushort index = (ushort)(U16(image, (int)versym.Offset + 2 * i, name) & 0x7fff);
            if (index != versionIndex) continue;
            bound.Add(CString(image, (int)symStrings.Offset + (int)U32(image, (int)dynsym.Offset + 24 * i, name), name));
        }
        foreach (string symbol in bound)
            Fail(!Contains(allowedSymbols, symbol), name,
                $"binds symbol '{symbol}' to {version}; making that version weak could break it at run time");

        ushort flags = U16(image, auxOffset + 4, name);
        if ((flags & VerFlgWeak) != 0) return ElfPatchOutcome.AlreadyWeak;
        flags |= VerFlgWeak;
        image[auxOffset + 4] = (byte)flags;
        image[auxOffset + 5] = (byte)(flags >> 8);
        return ElfPatchOutcome.Patched;
    }

    private readonly struct Section
    {
        public Section(uint type, ulong offset, ulong size, uint link, uint info) { Type = type; Offset = offset; Size = size; Link = link; Info = info; }
        public uint Type { get; }
        public ulong Offset { get; }
        public ulong Size { get; }
        public uint Link { get; }
        public uint Info { get; }
    }

    private static Section Single(List<Section> sections, uint type, string name, string what)
    {
        Section? found = null;
        foreach (Section s in sections)
        {
            if (s.Type != type) continue;
            Fail(found != null, name, $"has more than one {what} section");
            found = s;
        }
        Fail(found == null, name, $"has no {what} section");
        return found!.Value;
    }

    private static bool Contains(IReadOnlyCollection<string> set, string value)
    {
        foreach (string s in set) if (s == value) return true;
        return false;
    }

    private static void Fail(bool condition, string name, string problem)
    {
        if (condition) throw new ElfPatchException($"{name}: {problem}.");
    }

    private static void InRange(byte[] image, int offset, int size, string name) =>
        Fail(offset < 0 || offset + size > image.Length, name, "is truncated (a header points past the end of the file)");

    private static ushort U16(byte[] b, int o, string name) { InRange(b, o, 2, name); return (ushort)(b[o] | b[o + 1] << 8); }
    private static uint U32(byte[] b, int o, string name) { InRange(b, o, 4, name); return (uint)(b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24); }
    private static ulong U64(byte[] b, int o, string name) => U32(b, o, name) | (ulong)U32(b, o + 4, name) << 32;

    private static string CString(byte[] b, int o, string name)
    {
        InRange(b, o, 1, name);
        int end = o;
        while (end < b.Length && b[end] != 0) end++;
        Fail(end == b.Length, name, "has an unterminated string");
        return Encoding.ASCII.GetString(b, o, end - o);
    }

    private static int IndexOf(byte[] haystack, byte[] needle)
    {
        for (int i = 0; i + needle.Length <= haystack.Length; i++)
        {
            int j = 0;
            while (j < needle.Length && haystack[i + j] == needle[j]) j++;
            if (j == needle.Length) return i;
        }
        return -1;
    }
}

#if !ELF_PATCHER_STANDALONE
/// <summary>MSBuild task: applies <see cref="ElfVersionPatcher"/> to each existing file in <c>Files</c>.</summary>
public class MarkElfVersionNeedWeak : Microsoft.Build.Utilities.Task
{
    [Microsoft.Build.Framework.Required] public Microsoft.Build.Framework.ITaskItem[] Files { get; set; } = Array.Empty<Microsoft.Build.Framework.ITaskItem>();
    [Microsoft.Build.Framework.Required] public string Version { get; set; } = "";
    [Microsoft.Build.Framework.Required] public string AllowedSymbols { get; set; } = "";

    public override bool Execute()
    {
        string[] allowed = AllowedSymbols.Split(new[] { ';' }, StringSplitOptions.RemoveEmptyEntries);
        foreach (var item in Files)
        {
            string path = item.ItemSpec;
            if (!File.Exists(path)) continue;
            try
            {
                ElfPatchOutcome outcome = ElfVersionPatcher.MarkVersionNeedWeak(path, Version, allowed);
                Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal, $"{path}: {Version} need {(outcome == ElfPatchOutcome.Patched ? "marked weak" : "already weak")}.");
            }
            catch (ElfPatchException e)
            {
                Log.LogError($"Cannot apply the libstdc++ compatibility fix: {e.Message}");
            }
        }
        return !Log.HasLoggedErrors;
    }
}

/// <summary>MSBuild task: Result=true when no libstdc++.so.6 on this host defines <c>Version</c>.</summary>
public class HostLibStdCxxLacksVersion : Microsoft.Build.Utilities.Task
{
    [Microsoft.Build.Framework.Required] public string Version { get; set; } = "";
    [Microsoft.Build.Framework.Output] public bool Result { get; set; }

    private static readonly string[] Candidates =
    {
        "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6",
        "/usr/lib/aarch64-linux-gnu/libstdc++.so.6", "/lib/aarch64-linux-gnu/libstdc++.so.6",
        "/usr/lib64/libstdc++.so.6", "/lib64/libstdc++.so.6", "/usr/lib/libstdc++.so.6",
    };

    public override bool Execute()
    {
        bool found = false, defines = false;
        foreach (string candidate in Candidates)
        {
            if (!File.Exists(candidate)) continue;
            found = true;
            if (ElfVersionPatcher.LibraryDefinesVersion(candidate, Version)) { defines = true; break; }
        }
        // No libstdc++ found where we look: leave the library alone rather than guess.
        Result = found && !defines;
        return true;
    }
}
#endif
