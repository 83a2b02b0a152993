using System.Text.Json.Nodes;
using Microsoft.ML.Bone.Models.Roberta;
using Microsoft.ML.Bone.Evaluation;
using Microsoft.ML.Data;

namespace Microsoft.ML.Bone.Tests.TextClassification;

/// <summary>Everyday ML.NET habits, each written as an ML.NET user would write it.</summary>
[TestClass]
public sealed class PipelineBehaviourTests
{
    private static string _dir = "";
    private static string _model = "";

    [ClassInitialize]
    public static void CreateModel(TestContext _)
    {
        _dir = Directory.CreateTempSubdirectory("bone-habits-").FullName;
        _model = GlueData.TinyModel(Path.Combine(_dir, "tiny"), hidden: 16);
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_dir, recursive: true);

    private sealed class Row
    {
        public string Sentence1 { get; set; } = "";
        public string Label { get; set; } = "";
    }

    private sealed class Scored
    {
        public float[] Score { get; set; } = [];
        public string PredictedLabel { get; set; } = "";
    }

    // Training rows start with "positive" so that MapValueToKey's default order (by occurrence) differs from the sorted one.
    private static List<Row> Rows(int count, int offset = 0) => Enumerable.Range(offset, count).Select(i => i % 3 == 0
        ? new Row { Sentence1 = $"a wonderful, moving film number {i}", Label = "positive" }
        : new Row { Sentence1 = $"a dull and tedious mess number {i}", Label = i % 2 == 0 ? "negative" : "neutral" }).ToList();

    private static BoneTextClassificationOptions Options() => new() { ModelPath = _model, Rank = 4, MaxEpochs = 1, BatchSize = 8, MaxSequenceLength = 32, LearningRate = 1e-2 };

    [TestMethod]
    public void AValidationSetGivenRawOrWithItsOwnKeyOrderIsScoredAgainstTheTrainingKeys()
    {
        var ml = new MLContext(seed: 1);
        IDataView train = ml.Data.LoadFromEnumerable(Rows(24)), dev = ml.Data.LoadFromEnumerable(Rows(12, offset: 100));
        var reordered = ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue).Fit(dev).Transform(dev);
        foreach (var (name, validation) in new[] { ("raw", dev), ("own key order", reordered) })
        {
            var options = Options();
            options.ValidationSet = validation;
            var fitted = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Fit(train);
            var bone = fitted.OfType<BoneTextClassificationTransformer>().Single();
            double reported = bone.TrainingHistory.Last(h => h.ValidationMetric is not null).ValidationMetric!.Value;
            // The truth: ML.NET's evaluator on the dev rows scored by the same (final) model, keys from the training mapping.
            var metrics = ml.MulticlassClassification.Evaluate(fitted.Transform(dev));
            Assert.AreEqual(metrics.MicroAccuracy, reported, 1e-9, name);
        }
    }

    [TestMethod]
    public void AValidationLabelTheTrainingNeverSawIsSkippedAndAnUnmatchableTypeIsNamed()
    {
        var ml = new MLContext(seed: 1);
        IDataView train = ml.Data.LoadFromEnumerable(Rows(24));
        var options = Options();
        options.ValidationSet = ml.Data.LoadFromEnumerable(new[] { new Row { Sentence1 = "x", Label = "positive" }, new Row { Sentence1 = "y", Label = "surprised" } });
        ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Fit(train);
        options.ValidationSet = ml.Data.LoadFromEnumerable(new[] { new Row { Sentence1 = "y", Label = "surprised" } });
        StringAssert.Contains(Assert.ThrowsExactly<ArgumentException>(() => ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Fit(train)).Message, "No row of the validation set");
    }

    /// <summary>Rows that can be enumerated once, like a stream read as it arrives.</summary>
    private sealed class OnePass<T>(IEnumerable<T> rows) : IEnumerable<T>
    {
        private int _passes;
        public IEnumerator<T> GetEnumerator() => Interlocked.Increment(ref _passes) == 1 ? rows.GetEnumerator() : throw new InvalidOperationException("enumerated twice");
        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }

    [TestMethod]
    public void OnePassInputsAreScoredInOnePassAndGlueEvaluationReadsTheScoresOnce()
    {
        var ml = new MLContext(seed: 1);
        IDataView train = ml.Data.LoadFromEnumerable(Rows(24));
        var options = Options();
        options.BatchSize = 5;
        var fitted = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel")).Fit(train);
        var rows = Rows(13, offset: 50);
        var expected = ml.Data.CreateEnumerable<Scored>(fitted.Transform(ml.Data.LoadFromEnumerable(rows)), false).ToList();
        var onePass = ml.Data.CreateEnumerable<Scored>(fitted.Transform(ml.Data.LoadFromEnumerable(new OnePass<Row>(rows))), false).ToList();
        Assert.HasCount(13, onePass);
        for (int i = 0; i < 13; i++)
        {
            CollectionAssert.AreEqual(expected[i].Score, onePass[i].Score, $"row {i}");
            Assert.AreEqual(expected[i].PredictedLabel, onePass[i].PredictedLabel, $"row {i}");
        }

        // EvaluateGlue on a one-pass input must read it once; a label training never saw is skipped as ML.NET skips it.
        var withUnknown = rows.Append(new Row { Sentence1 = "what a surprise", Label = "surprised" }).ToList();
        var glue = ml.Bone.EvaluateGlue(fitted.Transform(ml.Data.LoadFromEnumerable(new OnePass<Row>(withUnknown))), GlueTask.Sst2);
        Assert.AreEqual((13, 1), (glue.Count, glue.SkippedRows));
        var again = ml.Bone.EvaluateGlue(fitted.Transform(ml.Data.LoadFromEnumerable(withUnknown)), GlueTask.Sst2);
        Assert.AreEqual(again.Accuracy, glue.Accuracy);
        Assert.AreEqual(glue.Multiclass!.MicroAccuracy, glue.Accuracy!.Value, 1e-9, "GLUE and ML.NET count the same rows");
    }

    [TestMethod]
    public void FitsOnTwoThreadsGiveTheModelsTheyGiveOneAfterTheOther()
    {
        IDataView Data(MLContext ml) => ml.Data.LoadFromEnumerable(Rows(24));
        float[] Fit(int seed)
        {
            var ml = new MLContext(seed: seed);
            var options = Options();
            options.Adapter = AdapterKind.Lora;   // random initial values, and the encoder's dropout is on
            var fitted = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel")).Fit(Data(ml));
            return ml.Data.CreateEnumerable<Scored>(fitted.Transform(Data(ml)), false).SelectMany(s => s.Score).ToArray();
        }
        float[] one = Fit(1), two = Fit(2);
        CollectionAssert.AreNotEqual(one, two, "the seeds differ, so do the models");
        for (int round = 0; round < 2; round++)
        {
            var tasks = new[] { Task.Run(() => Fit(1)), Task.Run(() => Fit(2)) };
            Task.WaitAll(tasks);
            CollectionAssert.AreEqual(one, tasks[0].Result, $"seed 1 on a thread, round {round}");
            CollectionAssert.AreEqual(two, tasks[1].Result, $"seed 2 on a thread, round {round}");
        }
    }

    [TestMethod]
    public void TheMergedClassifierNamesItsClasses()
    {
        var ml = new MLContext(seed: 1);
        var fitted = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(Options())).Fit(ml.Data.LoadFromEnumerable(Rows(24)));
        var bone = fitted.OfType<BoneTextClassificationTransformer>().Single();
        string merged = Path.Combine(_dir, "merged-classes");
        bone.ExportMergedModel(merged);
        var id2label = JsonNode.Parse(File.ReadAllText(Path.Combine(merged, "config.json")))!["id2label"]!.AsObject();
        CollectionAssert.AreEqual(new[] { "positive", "neutral", "negative" }, Enumerable.Range(0, 3).Select(i => id2label[i.ToString()]!.GetValue<string>()).ToArray());
        Assert.AreEqual(3, RobertaForSequenceClassification.FromPretrained(merged).NumLabels);
    }

    [TestMethod]
    public void AMaxSequenceLengthBeyondThePositionsOrAForeignTokenizerIsNamedBeforeTraining()
    {
        var ml = new MLContext(seed: 1);
        IDataView train = ml.Data.LoadFromEnumerable(Rows(8));
        var options = Options();
        options.MaxSequenceLength = 600;   // the tiny model has 130 positions (128 usable)
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Fit(train));
        Assert.AreEqual("MaxSequenceLength", e.ParamName);
        StringAssert.Contains(e.Message, "128 positions");

        // roberta-base's 50,265-token tokenizer next to a model with a 1,000-token vocabulary.
        string small = Path.Combine(_dir, "small-vocab");
        new RobertaForSequenceClassification(new RobertaConfig { VocabSize = 1000, HiddenSize = 16, NumHiddenLayers = 1, NumAttentionHeads = 2, IntermediateSize = 32, MaxPositionEmbeddings = 130, TypeVocabSize = 1, Labels = ["a", "b", "c"] }).SaveConfigAndWeights(small);
        foreach (string f in new[] { "vocab.json", "merges.txt" }) File.Copy(Path.Combine(_model, f), Path.Combine(small, f), overwrite: true);
        options = Options();
        options.ModelPath = small;
        var foreign = Assert.ThrowsExactly<InvalidDataException>(() => ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Fit(train));
        StringAssert.Contains(foreign.Message, "vocab.json");
        StringAssert.Contains(foreign.Message, "vocab_size 1000");
    }
}
