namespace Microsoft.ML.Bone.Tests.Build;

[TestClass]
public sealed class ElfVersionPatcherTests
{
    private const string Version = "GLIBCXX_3.4.32";
    private static readonly string[] Allowed = ["_ZSt21ios_base_library_initv"];

    /// <summary>The unpatched library as NuGet ships it (the build only patches copies in output folders).</summary>
    private static string ShippedLibrary()
    {
        string root = Environment.GetEnvironmentVariable("NUGET_PACKAGES")
            ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        string path = Path.Combine(root, "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        if (!File.Exists(path)) Assert.Inconclusive($"TorchSharp's Linux native library is not in the NuGet cache ({path}).");
        return path;
    }

    [TestMethod]
    public void MarksExactlyTheVersionNeedWeakAndIsIdempotent()
    {
        byte[] original = File.ReadAllBytes(ShippedLibrary());
        byte[] image = (byte[])original.Clone();

        Assert.AreEqual(ElfPatchOutcome.Patched, ElfVersionPatcher.MarkVersionNeedWeak(image, "lib", Version, Allowed));
        int[] changed = Enumerable.Range(0, image.Length).Where(i => image[i] != original[i]).ToArray();
        Assert.HasCount(1, changed, "one byte (vna_flags) changes");
        Assert.AreEqual(2, image[changed[0]] & 2, "VER_FLG_WEAK is set");
        Assert.AreEqual(0, original[changed[0]] & 2, "it was not set before");

        byte[] again = (byte[])image.Clone();
        Assert.AreEqual(ElfPatchOutcome.AlreadyWeak, ElfVersionPatcher.MarkVersionNeedWeak(again, "lib", Version, Allowed));
        CollectionAssert.AreEqual(image, again);
    }

    [TestMethod]
    public void PatchesAFileThroughATemporaryCopy()
    {
        string dir = Directory.CreateTempSubdirectory("bone-elf-").FullName;
        try
        {
            string path = Path.Combine(dir, "libLibTorchSharp.so");
            File.Copy(ShippedLibrary(), path);
            Assert.AreEqual(ElfPatchOutcome.Patched, ElfVersionPatcher.MarkVersionNeedWeak(path, Version, Allowed));
            Assert.AreEqual(ElfPatchOutcome.AlreadyWeak, ElfVersionPatcher.MarkVersionNeedWeak(path, Version, Allowed));
            CollectionAssert.AreEqual(new[] { "libLibTorchSharp.so" }, Directory.GetFiles(dir).Select(Path.GetFileName).ToArray(), "no temporary file left");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [TestMethod]
    public void BuildOutputIsPatchedWhenTheHostNeedsIt()
    {
        string host = new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6" }
            .FirstOrDefault(File.Exists) ?? "";
        if (host.Length == 0 || ElfVersionPatcher.LibraryDefinesVersion(host, Version))
            Assert.Inconclusive("This host's libstdc++ provides GLIBCXX_3.4.32; the build leaves the library alone.");
        string output = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        byte[] image = File.ReadAllBytes(output);
        Assert.AreEqual(ElfPatchOutcome.AlreadyWeak, ElfVersionPatcher.MarkVersionNeedWeak(image, output, Version, Allowed));
    }

    [TestMethod]
    public void RejectsFilesItDoesNotExpect()
    {
        byte[] shipped = File.ReadAllBytes(ShippedLibrary());
        StringAssert.Contains(Assert.ThrowsExactly<ElfPatchException>(() =>
            ElfVersionPatcher.MarkVersionNeedWeak("not an elf at all, just some text padding it out to sixty-four bytes."u8.ToArray(), "x.so", Version, Allowed)).Message,
            "x.so: is not an ELF file");
        StringAssert.Contains(Assert.ThrowsExactly<ElfPatchException>(() =>
            ElfVersionPatcher.MarkVersionNeedWeak(shipped[..4096], "cut.so", Version, Allowed)).Message, "cut.so");
        StringAssert.Contains(Assert.ThrowsExactly<ElfPatchException>(() =>
            ElfVersionPatcher.MarkVersionNeedWeak((byte[])shipped.Clone(), "lib.so", "GLIBCXX_9.9", Allowed)).Message, "does not require GLIBCXX_9.9");
        StringAssert.Contains(Assert.ThrowsExactly<ElfPatchException>(() =>
            ElfVersionPatcher.MarkVersionNeedWeak((byte[])shipped.Clone(), "lib.so", Version, [])).Message, "binds symbol '_ZSt21ios_base_library_initv'");
    }
}
