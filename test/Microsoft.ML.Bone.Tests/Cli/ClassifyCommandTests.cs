using Microsoft.ML.Bone.Tests.TextClassification;

namespace Microsoft.ML.Bone.Tests.Cli;

[TestClass]
public sealed class ClassifyCommandTests
{
    [TestMethod]
    [Timeout(600_000)]
    public void TrainEvalPredictOnSst2Files()
    {
        string dir = Directory.CreateTempSubdirectory("bone-classify-").FullName;
        try
        {
            string model = GlueData.TinyModel(Path.Combine(dir, "tiny"), hidden: 32);
            string train = SharedData.Path("glue", "sst2", "train.tsv"), dev = SharedData.Path("glue", "sst2", "dev.tsv");
            string zip = Path.Combine(dir, "sst2.zip");

            var trained = BoneCli.Run("classify", "train", "--model", model, "--train", train, "--dev", dev, "--max-rows", "600",
                "--epochs", "1", "--batch-size", "32", "--max-length", "48", "--rank", "8", "--out", zip);
            Assert.AreEqual(0, trained.ExitCode, trained.StdErr);
            StringAssert.Contains(trained.StdOut, "trainable params");
            StringAssert.Contains(trained.StdOut, "Sst2 (n = 872), accuracy");
            Assert.IsTrue(File.Exists(zip));
            byte[] png = File.ReadAllBytes(Path.ChangeExtension(zip, ".loss.png"));
            CollectionAssert.AreEqual(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4], "loss curve is a PNG");

            var evaluated = BoneCli.Run("classify", "eval", "--model", zip, "--data", dev, "--task", "Sst2");
            Assert.AreEqual(0, evaluated.ExitCode, evaluated.StdErr);
            StringAssert.Contains(evaluated.StdOut, "Sst2 (n = 872), accuracy");

            string predictions = Path.Combine(dir, "predictions.tsv");
            var predicted = BoneCli.Run("classify", "predict", "--model", zip, "--data", dev, "--out", predictions);
            Assert.AreEqual(0, predicted.ExitCode, predicted.StdErr);
            string[] lines = File.ReadAllLines(predictions);
            Assert.AreEqual("prediction\tscore_0\tscore_1", lines[0]);
            Assert.HasCount(873, lines);
            Assert.IsTrue(lines.Skip(1).All(l => l.Split('\t')[0] is "0" or "1"));

            BoneCli.AssertOneLineError(BoneCli.Run("classify", "eval", "--model", zip, "--data", dev, "--label-column", "nope"), "no column 'nope'");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
