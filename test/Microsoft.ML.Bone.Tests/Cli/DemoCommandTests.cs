using Microsoft.ML.Bone.Tests.TextClassification;

namespace Microsoft.ML.Bone.Tests.Cli;

/// <summary>
/// <c>bone demo</c> on a user's checkpoint and data (the embedded task, which pre-trains its own base first, runs in
/// CI's `.ci/run` as README's first command).
/// </summary>
[TestClass]
public sealed class DemoCommandTests
{
    [TestMethod]
    [Timeout(600_000)]
    public void BoneAndLoraSideBySideOnTheUsersModelAndData()
    {
        string dir = Directory.CreateTempSubdirectory("bone-demo-").FullName;
        try
        {
            string model = GlueData.TinyModel(Path.Combine(dir, "tiny"), hidden: 32);
            string train = SharedData.Path("glue", "sst2", "train.tsv");
            string output = Path.Combine(dir, "out");
            var run = BoneCli.Run("demo", "--model", model, "--train", train, "--max-rows", "288", "--epochs", "1", "--batch-size", "32",
                "--max-length", "32", "--rank", "4", "--out", output);
            Assert.AreEqual(0, run.ExitCode, run.StdErr);

            // Output is redirected here, so progress comes as plain lines for each run, first and last step included.
            foreach (string name in new[] { "Bone", "LoRA" })
            {
                StringAssert.Contains(run.StdOut, $"{name}: step 1/8 ");
                StringAssert.Contains(run.StdOut, $"{name}: step 8/8 (100%)");
            }
            // One markdown table: both rows, equal trainable parameters (b = 2r on square weights, plus the same head).
            string[] rows = run.StdOut.Split('\n').Where(l => l.StartsWith("| Bone (b = 8)", StringComparison.Ordinal) || l.StartsWith("| LoRA (r = 4)", StringComparison.Ordinal)).ToArray();
            Assert.HasCount(2, rows, run.StdOut);
            Assert.AreEqual(rows[0].Split('|')[5], rows[1].Split('|')[5], "the same trainable parameters");
            StringAssert.Contains(run.StdOut, "No --dev given: 10% of --train is held out");
            StringAssert.Contains(run.StdOut, "bone demo --model /path/to/roberta-base --train train.tsv --dev dev.tsv");

            foreach (string zip in new[] { "bone.zip", "lora.zip" })
            {
                using var loaded = (IDisposable)new MLContext().Bone.LoadModel(Path.Combine(output, zip), out _);
            }
            byte[] png = File.ReadAllBytes(Path.Combine(output, "demo-loss.png"));
            CollectionAssert.AreEqual(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4], "loss curves are a PNG");
            Assert.IsEmpty(Directory.GetFiles(output, "*partial*"), "no partial files left behind");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [TestMethod]
    public void MistakesAreOneLineErrorsBeforeAnyTraining()
    {
        string dir = Directory.CreateTempSubdirectory("bone-demo-").FullName;
        try
        {
            string train = SharedData.Path("glue", "sst2", "train.tsv");
            string model = GlueData.TinyModel(Path.Combine(dir, "tiny"), hidden: 32);
            BoneCli.AssertOneLineError(BoneCli.Run("demo", "--dev", train), "--dev needs --train");
            BoneCli.AssertOneLineError(BoneCli.Run("demo", "--model", Path.Combine(dir, "nope"), "--train", train), "--model", "no such directory");
            BoneCli.AssertOneLineError(BoneCli.Run("demo", "--train", train), "--train needs --model");
            BoneCli.AssertOneLineError(BoneCli.Run("demo", "--model", model, "--train", Path.Combine(dir, "missing.tsv")), "--train", "file not found");
            BoneCli.AssertOneLineError(BoneCli.Run("demo", "--model", model, "--train", train, "--text-column", "review", "--out", Path.Combine(dir, "o")), "no column 'review'", "sentence");
            File.WriteAllText(Path.Combine(dir, "file"), "");
            BoneCli.AssertOneLineError(BoneCli.Run("demo", "--out", Path.Combine(dir, "file")), "--out", "is a file");
            BoneCli.AssertOneLineError(BoneCli.Run("demo", "--rank", "0"), "--rank must be positive");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
