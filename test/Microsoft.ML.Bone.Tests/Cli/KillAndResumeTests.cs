using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Tests.TextClassification;

namespace Microsoft.ML.Bone.Tests.Cli;

/// <summary>A real `bone classify train` process killed with SIGKILL mid-run, then resumed.</summary>
[TestClass]
public sealed class KillAndResumeTests
{
    [TestMethod]
    [Timeout(600_000)]
    public void AKilledTrainingResumesToTheUninterruptedRunsAdapterBitForBit()
    {
        string dir = Directory.CreateTempSubdirectory("bone-kill-").FullName;
        try
        {
            string model = GlueData.TinyModel(Path.Combine(dir, "tiny"), hidden: 32);
            string train = SharedData.Path("glue", "sst2", "train.tsv");
            string[] Args(string zip, string checkpoints) =>
            [
                "classify", "train", "--model", model, "--train", train, "--max-rows", "480", "--epochs", "2", "--batch-size", "16", "--max-length", "32",
                "--rank", "8", "--adapter-dropout", "0.1", "--threads", "1", "--out", zip, "--checkpoint-dir", checkpoints, "--checkpoint-every", "3", "--resume",
            ];

            string unbroken = Path.Combine(dir, "unbroken.zip");
            var run = BoneCli.Run(Args(unbroken, Path.Combine(dir, "ckpt-unbroken")));
            Assert.AreEqual(0, run.ExitCode, run.StdErr);

            // The same run, killed as soon as its second checkpoint exists (60 steps in all).
            string checkpoints = Path.Combine(dir, "ckpt");
            string resumedZip = Path.Combine(dir, "resumed.zip");
            BoneCli.KillWhen(_ => Directory.Exists(Path.Combine(checkpoints, "checkpoint-00000006")), TimeSpan.FromMinutes(2), null, Args(resumedZip, checkpoints));
            Assert.IsFalse(File.Exists(resumedZip), "killed before it saved");

            var resumed = BoneCli.Run(Args(resumedZip, checkpoints));
            Assert.AreEqual(0, resumed.ExitCode, resumed.StdErr);
            // It really resumed: it says so, and it never ran the first steps again.
            StringAssert.Contains(resumed.StdOut, "resumed from");
            StringAssert.Contains(run.StdOut, "training: step 1/60 ");
            Assert.DoesNotContain("training: step 1/60 ", resumed.StdOut);

            // Compare the trained tensors (adapter and head) of both zips through their PEFT exports.
            Dictionary<string, byte[]> Trained(string zip, string name)
            {
                using var loaded = (BoneTextClassificationTransformer)((IEnumerable<ITransformer>)new MLContext().Bone.LoadModel(zip, out _)).OfType<BoneTextClassificationTransformer>().Single();
                string peft = Path.Combine(dir, name);
                loaded.ExportPeftAdapter(peft);
                using var file = SafetensorsFile.Open(Path.Combine(peft, "adapter_model.safetensors"));
                return file.Entries.ToDictionary(e => e.Name, e => { using var t = file.Load(e.Name); return t.bytes.ToArray(); });
            }
            // A zip of the other kind gets a sentence, not a cast error.
            BoneCli.AssertOneLineError(BoneCli.Run("lm", "generate", "--model", unbroken, "--prompt", "hi"), "is not a causal language model zip", "a text classifier");

            var expected = Trained(unbroken, "peft-unbroken");
            var actual = Trained(resumedZip, "peft-resumed");
            CollectionAssert.AreEquivalent(expected.Keys.ToArray(), actual.Keys.ToArray());
            foreach (var (name, bytes) in expected) CollectionAssert.AreEqual(bytes, actual[name], $"{name} equals the uninterrupted run's bit for bit");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
