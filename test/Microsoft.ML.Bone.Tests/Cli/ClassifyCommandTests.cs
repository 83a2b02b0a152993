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

    [TestMethod]
    [Timeout(600_000)]
    public void MrpcF1IsThatOfLabelOneWhateverTheFirstRowsLabel()
    {
        string dir = Directory.CreateTempSubdirectory("bone-classify-").FullName;
        try
        {
            string model = GlueData.TinyModel(Path.Combine(dir, "tiny"), hidden: 32);
            string dev = SharedData.Path("glue", "mrpc", "dev.tsv");
            // The first training row is labelled "1": with keys in order of appearance "1" would be the first key and
            // GLUE's positive class (the second key) would be "0".
            string[] all = File.ReadAllLines(SharedData.Path("glue", "mrpc", "train.tsv"));
            string train = Path.Combine(dir, "train.tsv");
            File.WriteAllLines(train, [all[0], .. all.Skip(1).Where(l => l.EndsWith("\t1", StringComparison.Ordinal)).Take(1), .. all.Skip(1).Take(300)]);
            string zip = Path.Combine(dir, "mrpc.zip");
            var trained = BoneCli.Run("classify", "train", "--model", model, "--train", train, "--text-column", "sentence1", "--text2-column", "sentence2",
                "--epochs", "1", "--batch-size", "32", "--max-length", "64", "--rank", "8", "--out", zip);
            Assert.AreEqual(0, trained.ExitCode, trained.StdErr);

            var evaluated = BoneCli.Run("classify", "eval", "--model", zip, "--data", dev, "--text-column", "sentence1", "--text2-column", "sentence2", "--task", "Mrpc");
            Assert.AreEqual(0, evaluated.ExitCode, evaluated.StdErr);
            var match = System.Text.RegularExpressions.Regex.Match(evaluated.StdOut, @"F1 ([0-9.]+)");
            Assert.IsTrue(match.Success, evaluated.StdOut);
            double reported = double.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);

            string predictions = Path.Combine(dir, "predictions.tsv");
            var predicted = BoneCli.Run("classify", "predict", "--model", zip, "--data", dev, "--text-column", "sentence1", "--text2-column", "sentence2", "--out", predictions);
            Assert.AreEqual(0, predicted.ExitCode, predicted.StdErr);
            string[] truth = File.ReadLines(dev).Skip(1).Select(l => l.Split('\t')[^1]).ToArray();
            string[] guess = File.ReadLines(predictions).Skip(1).Select(l => l.Split('\t')[0]).ToArray();
            int tp = truth.Zip(guess).Count(p => p is ("1", "1")), fp = truth.Zip(guess).Count(p => p is ("0", "1")), fn = truth.Zip(guess).Count(p => p is ("1", "0"));
            double f1 = tp == 0 ? 0 : 2.0 * tp / (2 * tp + fp + fn);
            Assert.AreEqual(f1, reported, 1e-4, "GLUE F1 is the F1 of label 1 (paraphrase)");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
