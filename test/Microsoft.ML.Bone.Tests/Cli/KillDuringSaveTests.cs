using Microsoft.ML.Bone.Tests.Reliability;
using Microsoft.ML.Bone.Tests.TextClassification;

namespace Microsoft.ML.Bone.Tests.Cli;

/// <summary>
/// Each writing command (all but <c>bench</c>, whose reports go through the same atomic writer), run as a real process and SIGKILLed in the middle of its save (held there by
/// BONE_FAULT_HOLD_WRITES once its temporary output is complete, before the rename): the earlier output is intact,
/// no partial output appears, and the next run leaves nothing behind (no temporary siblings, no scratch folders).
/// </summary>
[TestClass]
[DoNotParallelize]
public sealed class KillDuringSaveTests
{
    private static string _dir = "";
    private static string _tmp = "";
    private static string _roberta = "";
    private static string _llama = "";
    private static string _adapter = "";

    [ClassInitialize]
    public static void CreateInputs(TestContext context)
    {
        _dir = Directory.CreateTempSubdirectory("bone-kill-save-").FullName;
        _tmp = Directory.CreateDirectory(Path.Combine(_dir, "tmp")).FullName;
        _roberta = GlueData.TinyModel(Path.Combine(_dir, "roberta"), hidden: 16);
        string zip = FuzzModelZip.Create(Path.Combine(_dir, "lm"));
        _llama = Path.Combine(_dir, "lm", "base");
        _adapter = Path.Combine(_dir, "adapter");
        using var loaded = (BoneCausalLMTransformer)new MLContext().Bone.LoadModel(zip, out _);
        loaded.ExportPeftAdapter(_adapter);
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_dir, recursive: true);

    private static Dictionary<string, string> Environment(string? holdFolder = null, int skip = 0) => holdFolder is null
        ? new() { ["TMPDIR"] = _tmp }
        : new() { ["TMPDIR"] = _tmp, ["BONE_FAULT_HOLD_WRITES"] = holdFolder, ["BONE_FAULT_HOLD_SKIP"] = skip.ToString(System.Globalization.CultureInfo.InvariantCulture) };

    private static (int ExitCode, string Output) RunToEnd(string[] args)
    {
        var result = BoneCli.Run(TimeSpan.FromMinutes(3), Environment(), args);
        return (result.ExitCode, result.StdOut + result.StdErr);
    }

    /// <summary>Runs <paramref name="args"/> until its save (after <paramref name="skip"/> others) is held, then SIGKILLs it; returns the held temporary path.</summary>
    private static string KillDuringSave(string[] args, int skip = 0)
    {
        string hold = Directory.CreateTempSubdirectory("hold-").FullName;
        try
        {
            // The marker, named after the process id, appears whole (written, then renamed) once the save is held.
            string Marker(int pid) => Path.Combine(hold, pid.ToString(System.Globalization.CultureInfo.InvariantCulture));
            int pid = BoneCli.KillWhen(id => File.Exists(Marker(id)), TimeSpan.FromMinutes(3), Environment(hold, skip), args);
            return File.ReadAllLines(Marker(pid))[0];
        }
        finally { Directory.Delete(hold, recursive: true); }
    }

    // The output folder holds no temporary sibling, and TMPDIR no scratch folder of an ended process.
    private static void AssertNothingLeftBehind(string output)
    {
        string folder = Path.GetDirectoryName(Path.GetFullPath(output))!;
        string[] leftovers = [.. Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName).Where(n => n!.Contains(".tmp-", StringComparison.Ordinal))!];
        Assert.IsEmpty(leftovers, $"temporary siblings in {folder}: {string.Join(", ", leftovers)}");
        // Ours: bone-PID scratch folders, and ML.NET's ml_dotnet_* ones (which the CLI puts inside its own). The runtime's
        // diagnostics pipes of a killed process are not the project's.
        string[] scratch = [.. Directory.EnumerateFileSystemEntries(_tmp).Select(Path.GetFileName).Where(n => n!.StartsWith("bone-", StringComparison.Ordinal) || n.StartsWith("ml_dotnet_", StringComparison.Ordinal))!];
        Assert.IsEmpty(scratch, $"left in TMPDIR: {string.Join(", ", scratch)}");
    }

    private static void FileCommand(string name, string output, Func<string[]> args)
    {
        var first = RunToEnd(args());
        Assert.AreEqual(0, first.ExitCode, $"{name}: {first.Output}");
        byte[] before = File.ReadAllBytes(output);

        string temp = KillDuringSave(args());
        Assert.IsTrue(File.Exists(temp) || Directory.Exists(temp), $"{name}: killed mid-save, its temporary output {temp} is there");
        CollectionAssert.AreEqual(before, File.ReadAllBytes(output), $"{name}: the earlier output is intact");

        var again = RunToEnd(args());
        Assert.AreEqual(0, again.ExitCode, $"{name} after the kill: {again.Output}");
        AssertNothingLeftBehind(output);
    }

    private static void FolderCommand(string name, string output, Func<string[]> args)
    {
        string temp = KillDuringSave(args());
        Assert.IsTrue(File.Exists(temp) || Directory.Exists(temp), $"{name}: killed mid-save, its temporary output {temp} is there");
        Assert.IsFalse(Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any(), $"{name}: no partial {output}");

        var again = RunToEnd(args());
        Assert.AreEqual(0, again.ExitCode, $"{name} after the kill: {again.Output}");
        Assert.IsTrue(File.Exists(Path.Combine(output, name == "merge" ? "model.safetensors" : "adapter_model.safetensors")), $"{name}: complete output");
        AssertNothingLeftBehind(output);
    }

    [TestMethod]
    [Timeout(600_000)]
    public void ClassifyTrainAndPredict()
    {
        string zip = Path.Combine(_dir, "classify.zip"), predictions = Path.Combine(_dir, "predictions.tsv");
        string train = SharedData.Path("glue", "sst2", "train.tsv"), dev = SharedData.Path("glue", "sst2", "dev.tsv");
        FileCommand("classify train", zip, () => ["classify", "train", "--model", _roberta, "--train", train, "--max-rows", "32", "--epochs", "1", "--batch-size", "16", "--max-length", "32", "--rank", "4", "--threads", "1", "--out", zip]);
        FileCommand("classify predict", predictions, () => ["classify", "predict", "--model", zip, "--data", dev, "--out", predictions]);
        string demo = Path.Combine(_dir, "demo");
        FileCommand("demo", Path.Combine(demo, "bone.zip"), () => ["demo", "--model", _roberta, "--train", train, "--max-rows", "64", "--epochs", "1", "--batch-size", "32", "--max-length", "32", "--rank", "4", "--threads", "1", "--out", demo]);
    }

    [TestMethod]
    [Timeout(600_000)]
    public void LmTrainLogitsMergeAndConvert()
    {
        string jsonl = Path.Combine(_dir, "train.jsonl");
        File.WriteAllLines(jsonl, Enumerable.Range(0, 8).Select(i => $$"""{"question": "q{{i}}", "answer": "a{{i}}"}"""));
        string zip = Path.Combine(_dir, "lm.zip"), logits = Path.Combine(_dir, "logits.safetensors");
        FileCommand("lm train", zip, () => ["lm", "train", "--model", _llama, "--train", jsonl, "--epochs", "1", "--batch-size", "4", "--max-length", "32", "--rank", "4", "--max-new-tokens", "4", "--threads", "1", "--out", zip]);
        FileCommand("logits", logits, () => ["logits", "--model", _llama, "--ids", "1,2,3", "--out", logits]);
        string merged = Path.Combine(_dir, "merged"), converted = Path.Combine(_dir, "converted");
        FolderCommand("merge", merged, () => ["merge", "--model", _llama, "--adapter", _adapter, "--out", merged]);
        FolderCommand("convert", converted, () => ["convert", "--adapter", _adapter, "--to", "bone", "--out", converted]);
    }

    [TestMethod]
    [Timeout(600_000)]
    public void AKillDuringACheckpointWriteKeepsThePreviousCheckpointAndResumes()
    {
        string zip = Path.Combine(_dir, "checkpointed.zip"), checkpoints = Path.Combine(_dir, "checkpoints");
        string train = SharedData.Path("glue", "sst2", "train.tsv");
        string[] args = ["classify", "train", "--model", _roberta, "--train", train, "--max-rows", "96", "--epochs", "1", "--batch-size", "16", "--max-length", "32",
            "--rank", "4", "--threads", "1", "--out", zip, "--checkpoint-dir", checkpoints, "--checkpoint-every", "2", "--resume"];
        // Each checkpoint commits three times (its weights, its state file, then its folder): skipping five holds the
        // second checkpoint's folder, complete but not yet in place.
        string temp = KillDuringSave(args, skip: 5);
        StringAssert.Contains(temp, "checkpoint-00000004");
        CollectionAssert.AreEqual(new[] { "checkpoint-00000002" }, Directory.GetDirectories(checkpoints).Select(Path.GetFileName).Where(n => !n!.Contains(".tmp-", StringComparison.Ordinal)).ToArray(), "the first checkpoint is intact");
        Assert.IsFalse(File.Exists(zip));

        var resumed = RunToEnd(args);
        Assert.AreEqual(0, resumed.ExitCode, resumed.Output);
        StringAssert.Contains(resumed.Output, "resumed from");
        StringAssert.Contains(resumed.Output, "checkpoint-00000002");
        Assert.IsTrue(File.Exists(zip));
        AssertNothingLeftBehind(Path.Combine(checkpoints, "checkpoint-00000002"));
    }
}
