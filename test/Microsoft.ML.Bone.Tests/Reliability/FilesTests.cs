using System.Diagnostics;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Tests.Cli;

namespace Microsoft.ML.Bone.Tests.Reliability;

/// <summary>Inputs are regular files after following links; outputs replace the old file whole or not at all.</summary>
[TestClass]
public sealed class FilesTests
{
    private static string _dir = "";

    [ClassInitialize]
    public static void CreateFolder(TestContext _) => _dir = Directory.CreateTempSubdirectory("bone-files-").FullName;

    [ClassCleanup]
    public static void RemoveFolder() => Directory.Delete(_dir, recursive: true);

    [TestMethod]
    public void LinksAreFollowedAndFifosDevicesAndFoldersAreRefusedWithoutBlocking()
    {
        string real = Path.Combine(_dir, "real.json");
        File.WriteAllText(real, "{\"a\": 1}");
        string link = Path.Combine(_dir, "link.json");
        File.CreateSymbolicLink(link, real);
        Assert.AreEqual(real, InputFile.Resolve(link));
        Assert.AreEqual("{\"a\": 1}", InputFile.ReadAllText(link));
        Assert.AreEqual(new FileInfo(real).Length, InputFile.ReadAllBytes(link).Length, "the target's bytes, not the link's");

        // A checkpoint reader that sizes its file reads the target's size through a link.
        string stories = Path.Combine(_dir, "stories.bin");
        File.CreateSymbolicLink(stories, SharedData.Path("models", "stories260K", "stories260K.bin"));
        Microsoft.ML.Bone.Models.Llama.Llama2cCheckpoint.Load(stories).Dispose();

        string dangling = Path.Combine(_dir, "dangling.json");
        File.CreateSymbolicLink(dangling, Path.Combine(_dir, "gone.json"));
        StringAssert.Contains(Assert.ThrowsExactly<FileNotFoundException>(() => InputFile.Resolve(dangling)).Message, "which does not exist");
        StringAssert.Contains(Assert.Throws<IOException>(() => InputFile.Resolve(_dir)).Message, "is a directory");
        if (OperatingSystem.IsWindows()) return;

        StringAssert.Contains(Assert.Throws<IOException>(() => InputFile.ReadAllBytes("/dev/zero")).Message, "character device");
        string fifo = Path.Combine(_dir, "model.safetensors");
        using (var mkfifo = Process.Start("mkfifo", fifo)) mkfifo.WaitForExit();
        var clock = Stopwatch.StartNew();
        StringAssert.Contains(Assert.Throws<IOException>(() => SafetensorsFile.Open(fifo)).Message, "FIFO");
        Assert.IsLessThan(5.0, clock.Elapsed.TotalSeconds, "refused without waiting for a writer");
    }

    [TestMethod]
    public void AnInterruptedWriteKeepsTheOldFileAndLeavesNothingBehind()
    {
        string target = Path.Combine(_dir, "keep.bin");
        File.WriteAllBytes(target, [1, 2, 3]);
        Assert.Throws<IOException>(() => AtomicFile.Write(target, stream =>
        {
            stream.Write(new byte[1000]);
            throw new IOException("disk full");
        }));
        CollectionAssert.AreEqual(new byte[] { 1, 2, 3 }, File.ReadAllBytes(target));
        Assert.IsEmpty(Directory.GetFiles(_dir, ".keep.bin.tmp-*"));
    }

    [TestMethod]
    public void LeftoversOfEndedProcessesAreRemovedByTheNextWriteOthersAreKept()
    {
        string target = Path.Combine(_dir, "model.zip");
        int ended = EndedProcessId();
        string stale = Path.Combine(_dir, $".model.zip.tmp-{ended}-0123");
        string staleFolder = Path.Combine(_dir, $".model.zip.tmp-{ended}-4567");
        string live = Path.Combine(_dir, $".model.zip.tmp-{Environment.ProcessId}-89ab");
        File.WriteAllText(stale, "half a zip");
        Directory.CreateDirectory(staleFolder);
        File.WriteAllText(live, "another writer, still running");
        AtomicFile.Write(target, s => s.Write("new"u8));
        Assert.IsFalse(File.Exists(stale) || Directory.Exists(staleFolder), "the ended process's leftovers are gone");
        Assert.IsTrue(File.Exists(live), "a running process's temporary file is left alone");
        Assert.AreEqual("new", File.ReadAllText(target));
        File.Delete(live);
    }

    [TestMethod]
    public void ACheckpointFolderLosesEveryLeftoverOfEndedProcessesWhateverItsName()
    {
        string folder = Directory.CreateDirectory(Path.Combine(_dir, "checkpoints")).FullName;
        int ended = EndedProcessId();
        string stale = Path.Combine(folder, $".checkpoint-00000004.tmp-{ended}-0123");
        string live = Path.Combine(folder, $".checkpoint-00000006.tmp-{Environment.ProcessId}-89ab");
        string user = Path.Combine(folder, "notes.tmp-1-keep");
        Directory.CreateDirectory(stale);
        Directory.CreateDirectory(live);
        File.WriteAllText(user, "not ours");
        TempPaths.RemoveAllStaleSiblings(folder);
        Assert.IsFalse(Directory.Exists(stale), "a killed write of a checkpoint that is never written again is removed");
        Assert.IsTrue(Directory.Exists(live) && File.Exists(user), "a running writer's folder and the user's own file stay");
        Directory.Delete(folder, recursive: true);
    }

    [TestMethod]
    public void TheCliChecksOutputsBeforeTrainingAndGivesParseErrorsOnOneLine()
    {
        string train = SharedData.Path("glue", "sst2", "train.tsv");
        BoneCli.AssertOneLineError(BoneCli.Run("classify", "train", "--model", _dir, "--train", train, "--out", Path.Combine(_dir, "no-such-folder", "m.zip")), "--out", "does not exist");
        BoneCli.AssertOneLineError(BoneCli.Run("classify", "train", "--model", _dir, "--train", train, "--out", _dir), "--out", "is a directory");
        BoneCli.AssertOneLineError(BoneCli.Run("classify", "train", "--model", _dir, "--train", train, "--out", train), "--out", "is also --train");
        string zip = Path.Combine(_dir, "m.zip");
        BoneCli.AssertOneLineError(BoneCli.Run("classify", "train", "--model", _dir, "--train", train, "--out", zip, "--plot", zip), "--plot", "is also --out");
        BoneCli.AssertOneLineError(BoneCli.Run("lm", "train", "--model", _dir, "--train", train, "--out", train), "--out", "is also --train");
        // System.CommandLine's own errors, too: one line naming the command and where its usage is.
        BoneCli.AssertOneLineError(BoneCli.Run("classify", "train", "--bogus"), "bone classify train: error:", "'--bogus'", "--model' is required", "bone classify train --help");
        BoneCli.AssertOneLineError(BoneCli.Run("demo", "--rank", "x"), "bone demo: error:", "'x'", "--rank");
    }

    [TestMethod]
    public void TsvRowsThatMlNetWouldSplitOrShiftAreReportedWithTheirLine()
    {
        string model = TextClassification.GlueData.TinyModel(Path.Combine(_dir, "tiny"), hidden: 32);
        string zip = Path.Combine(_dir, "t.zip");
        (string Content, string Expected)[] cases =
        [
            ("sentence\tlabel\ngood\t1\nba\rd\t0\n", "line 3 has a carriage return"),
            ("sentence\tlabel\ngood\t1\nbad\n", "line 3 has 1 fields, the header has 2"),
            ("sentence\tlabel\n", "has a header but no rows"),
        ];
        foreach (var (content, expected) in cases)
        {
            string file = Path.Combine(_dir, "rows.tsv");
            File.WriteAllText(file, content);
            BoneCli.AssertOneLineError(BoneCli.Run("classify", "train", "--model", model, "--train", file, "--out", zip), "rows.tsv", expected);
        }
        string csv = Path.Combine(_dir, "rows.csv");
        File.WriteAllText(csv, "sentence,label\n\"good, really\",1\n\"bad,0\n");
        BoneCli.AssertOneLineError(BoneCli.Run("classify", "train", "--model", model, "--train", csv, "--out", zip), "rows.csv", "line 3 has an unbalanced quote");
        // CRLF line endings are ordinary: this file passes the checks (and fails later only for want of a model).
        string crlf = Path.Combine(_dir, "crlf.tsv");
        File.WriteAllText(crlf, "sentence\tlabel\r\ngood\t1\r\nbad\t0\r\n");
        var run = BoneCli.Run("classify", "train", "--model", Path.Combine(_dir, "no-model"), "--train", crlf, "--out", zip);
        Assert.DoesNotContain("crlf.tsv", run.StdErr, run.StdErr);

        string empty = Path.Combine(_dir, "empty.jsonl");
        File.WriteAllText(empty, "\n\n");
        BoneCli.AssertOneLineError(BoneCli.Run("lm", "eval", "--model", zip, "--data", empty), "no examples");
    }

    private static int EndedProcessId()
    {
        // A process started and waited for: its id names no running process (until reused, which takes a while).
        using var process = Process.Start(new ProcessStartInfo("dotnet", "--version") { RedirectStandardOutput = true })!;
        process.WaitForExit();
        return process.Id;
    }
}
