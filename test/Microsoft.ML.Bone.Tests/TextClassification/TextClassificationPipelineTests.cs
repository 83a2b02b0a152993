using Microsoft.ML.Bone.Evaluation;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Models.Roberta;
using Microsoft.ML.Bone.Training;
using Microsoft.ML.Data;
using Microsoft.ML.Bone.Tests.Training;

namespace Microsoft.ML.Bone.Tests.TextClassification;

/// <summary>End-to-end runs on real GLUE data through ordinary ML.NET pipelines.</summary>
[TestClass]
public sealed class TextClassificationPipelineTests
{
    private static string _dir = "";
    private static string _base = "";

    [ClassInitialize]
    public static void BuildBase(TestContext _)
    {
        _dir = Directory.CreateTempSubdirectory("bone-glue-").FullName;
        _base = GlueData.PretrainedTinyModel(_dir);
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_dir, recursive: true);

    private static BoneTextClassificationOptions Options(AdapterKind adapter = AdapterKind.Bone, int epochs = 3) => new()
    {
        ModelPath = _base, Adapter = adapter, Rank = adapter is AdapterKind.Bone or AdapterKind.Bat ? 16 : 8, MaxEpochs = epochs,
        BatchSize = 32, MaxSequenceLength = 64, LearningRate = 2e-3,
    };

    private static float[][] Scores(IDataView scored, string column = "Score")
    {
        var values = new List<float[]>();
        using var cursor = scored.GetRowCursor([scored.Schema[column]]);
        var get = cursor.GetGetter<VBuffer<float>>(scored.Schema[column]);
        VBuffer<float> v = default;
        while (cursor.MoveNext()) { get(ref v); values.Add(v.DenseValues().ToArray()); }
        return [.. values];
    }

    [TestMethod]
    [Timeout(600_000)]
    public void BoneOnSst2BeatsTheMajorityClassAndSurvivesSaveAndLoad()
    {
        var ml = new MLContext(seed: 1);
        var log = new List<string>();
        ml.Log += (_, e) => { if (e.Source.Contains("BoneTextClassification")) lock (log) log.Add(e.RawMessage); };
        var progress = new SynchronousProgress<TrainingProgress>();
        var options = Options();
        options.Progress = progress;
        IDataView train = GlueData.LoadSingle(ml, "sst2", "train", 4000), dev = GlueData.LoadSingle(ml, "sst2", "dev");

        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Bone.TextClassification(options))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabelText", "PredictedLabel"));
        var model = pipeline.Fit(train);

        var history = ((IEnumerable<ITransformer>)model).OfType<BoneTextClassificationTransformer>().Single().TrainingHistory;
        double first = history.Take(10).Average(h => h.Loss), last = history.TakeLast(10).Average(h => h.Loss);
        Console.WriteLine($"training loss {first:F3} -> {last:F3} over {history.Count} steps");
        Assert.IsTrue(last < first - 0.05, $"training loss {first:F3} -> {last:F3}");
        Assert.IsTrue(log.Any(m => m.Contains("trainable params")) && log.Any(m => m.StartsWith("step ")), "progress reaches mlContext.Log");
        Assert.IsTrue(progress.Reports.Count >= history.Count(h => h.ValidationMetric is null), "IProgress receives every step");

        IDataView scored = model.Transform(dev);
        var metrics = ml.MulticlassClassification.Evaluate(scored);
        GlueEvaluation glue = ml.Bone.EvaluateGlue(scored, GlueTask.Sst2);
        Console.WriteLine($"SST-2 dev: {glue}; LogLoss {metrics.LogLoss:F4}");
        Assert.AreEqual(872, glue.Count);
        Assert.IsTrue(glue.Accuracy > 444.0 / 872 + 0.05, $"dev accuracy {glue.Accuracy:F4} vs majority {444.0 / 872:F4}");
        Assert.AreEqual(metrics.MicroAccuracy, glue.Accuracy!.Value, 1e-9);
        CollectionAssert.AreEqual(new[] { "0", "1" }, GetSlotNames(scored), "class names on Score");

        string zip = Path.Combine(_dir, "sst2.zip");
        ml.Model.Save(model, train.Schema, zip);
        var fresh = new MLContext(seed: 5);
        _ = fresh.Bone;
        ITransformer loaded = fresh.Model.Load(zip, out DataViewSchema inputSchema);
        Assert.AreEqual("Sentence1", inputSchema[0].Name);
        float[][] before = Scores(scored), after = Scores(loaded.Transform(dev));
        for (int i = 0; i < before.Length; i++) CollectionAssert.AreEqual(before[i], after[i], $"row {i} after reload");

        var engine = fresh.Model.CreatePredictionEngine<GlueData.Single, Prediction>(loaded);
        var prediction = engine.Predict(new GlueData.Single { Sentence1 = "it 's a charming and often affecting journey . " });
        Assert.HasCount(2, prediction.Score);
        // One unpadded sequence against a padded batch: the same up to summation order.
        Assert.AreEqual(before[0][0], engine.Predict(FirstDevRow(ml)).Score[0], 1e-5, "PredictionEngine scores like Transform");
        Assert.IsTrue(prediction.PredictedLabelText is "0" or "1");
    }

    [TestMethod]
    [Timeout(600_000)]
    public void ThePipelineOfTheGuideEvaluatesAfterMapKeyToValue()
    {
        var ml = new MLContext(seed: 1);
        var options = Options(epochs: 1);
        options.MaxSteps = 20;
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Bone.TextClassification(options))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
        IDataView train = GlueData.LoadSingle(ml, "sst2", "train", 640);
        var model = pipeline.Fit(train);
        IDataView scored = model.Transform(GlueData.LoadSingle(ml, "sst2", "dev"));
        Assert.IsInstanceOfType<TextDataViewType>(scored.Schema["PredictedLabel"].Type);
        var metrics = ml.MulticlassClassification.Evaluate(scored);
        GlueEvaluation glue = ml.Bone.EvaluateGlue(scored, GlueTask.Mrpc);
        Assert.AreEqual(metrics.MicroAccuracy, glue.Accuracy!.Value, 1e-9);
        Assert.IsNotNull(glue.F1);
    }

    private static GlueData.Single FirstDevRow(MLContext ml) => ml.Data.CreateEnumerable<GlueData.Single>(GlueData.LoadSingle(ml, "sst2", "dev", 1), false).Single();

    private static string[] GetSlotNames(IDataView scored)
    {
        VBuffer<ReadOnlyMemory<char>> names = default;
        scored.Schema["Score"].GetSlotNames(ref names);
        return names.DenseValues().Select(n => n.ToString()).ToArray();
    }

    private sealed class Prediction
    {
        public float[] Score { get; set; } = [];
        public string PredictedLabelText { get; set; } = "";
    }

    [TestMethod]
    [Timeout(600_000)]
    public void ColaReportsMatthewsCorrelation()
    {
        var ml = new MLContext(seed: 2);
        var options = Options(epochs: 1);
        options.ValidationSet = ml.Transforms.Conversion.MapValueToKey("Label").Fit(GlueData.LoadSingle(ml, "cola", "train", 2000)).Transform(GlueData.LoadSingle(ml, "cola", "dev", 300));
        options.ValidationMetric = ValidationMetric.MatthewsCorrelation;
        var mapLabel = ml.Transforms.Conversion.MapValueToKey("Label");
        IDataView train = GlueData.LoadSingle(ml, "cola", "train", 2000);
        var model = mapLabel.Append(ml.Bone.TextClassification(options)).Fit(train);
        GlueEvaluation glue = ml.Bone.EvaluateGlue(model.Transform(GlueData.LoadSingle(ml, "cola", "dev")), GlueTask.Cola);
        Console.WriteLine($"CoLA dev: {glue}");
        Assert.IsNotNull(glue.MatthewsCorrelation);
        Assert.IsNull(glue.Accuracy);
        Assert.IsTrue(glue.MatthewsCorrelation is >= -1 and <= 1);
        Assert.IsTrue(((IEnumerable<ITransformer>)model).OfType<BoneTextClassificationTransformer>().Single().TrainingHistory.Any(h => h.ValidationMetric is not null));
    }

    [TestMethod]
    [Timeout(600_000)]
    public void StsBRegressionScoresASingle()
    {
        var ml = new MLContext(seed: 3);
        var options = Options(AdapterKind.Lora, epochs: 1);
        options.Sentence2ColumnName = "Sentence2";
        options.MaxSteps = 40;
        var model = ml.Bone.TextClassification(options).Fit(GlueData.LoadPair(ml, "stsb", "train", 1500));
        IDataView scored = model.Transform(GlueData.LoadPair(ml, "stsb", "dev", 400));
        Assert.AreEqual(NumberDataViewType.Single, scored.Schema["Score"].Type);
        var regression = ml.Regression.Evaluate(scored);
        GlueEvaluation glue = ml.Bone.EvaluateGlue(scored, GlueTask.StsB);
        Console.WriteLine($"STS-B dev: {glue}; RMSE {regression.RootMeanSquaredError:F3}");
        Assert.IsNotNull(glue.Pearson);
        Assert.IsNotNull(glue.Spearman);
        Assert.AreEqual(regression.MeanSquaredError, glue.Regression!.MeanSquaredError, 1e-9);
    }

    public static IEnumerable<object[]> AdapterKinds => [[AdapterKind.Bat], [AdapterKind.Lora], [AdapterKind.PiSSA], [AdapterKind.OLoRA], [AdapterKind.FullFineTuning]];

    [TestMethod]
    [Timeout(600_000)]
    [DynamicData(nameof(AdapterKinds))]
    public void EveryAdapterTrainsSavesAndReloadsIdentically(AdapterKind adapter)
    {
        var ml = new MLContext(seed: 4);
        var options = Options(adapter, epochs: 1);
        options.MaxSteps = 10;
        options.Sentence2ColumnName = "Sentence2";
        IDataView raw = GlueData.LoadPair(ml, "mrpc", "train", 400);
        IDataView data = ml.Transforms.Conversion.MapValueToKey("Label").Fit(raw).Transform(raw);
        var model = ml.Bone.TextClassification(options).Fit(data);
        IDataView dev = ml.Data.TakeRows(data, 64);
        float[][] before = Scores(model.Transform(dev));

        string zip = Path.Combine(_dir, $"mrpc-{adapter}.zip");
        ml.Model.Save(model, data.Schema, zip);
        var fresh = new MLContext();
        ITransformer loaded = fresh.Bone.LoadModel(zip, out _);
        float[][] after = Scores(loaded.Transform(dev));
        for (int i = 0; i < before.Length; i++) CollectionAssert.AreEqual(before[i], after[i], $"{adapter}: row {i} after reload");

        // The merged Hugging Face export reproduces the probabilities without any adapter code.
        string merged = Path.Combine(_dir, $"merged-{adapter}");
        model.ExportMergedModel(merged);
        var plain = RobertaForSequenceClassification.FromPretrained(merged);
        var tokenizer = Microsoft.ML.Bone.Tokenization.RobertaTokenizer.FromDirectory(merged);
        var first = ml.Data.CreateEnumerable<GlueData.Pair>(raw, false).First();
        float[] probabilities = Microsoft.ML.Bone.Tasks.SequenceClassification.Predict(plain, [tokenizer.EncodePair(first.Sentence1, first.Sentence2, 64)], tokenizer.PadId, 1, softmax: true)[0];
        for (int c = 0; c < 2; c++) Assert.AreEqual(before[0][c], probabilities[c], 1e-4, $"{adapter}: merged export, class {c}");
    }

    [TestMethod]
    [Timeout(600_000)]
    public void Bf16BaseTrainsWithFloat32Adapters()
    {
        var ml = new MLContext(seed: 7);
        var options = Options(epochs: 1);
        options.MaxSteps = 2;
        options.BatchSize = 8;
        options.DType = BaseDType.BFloat16;
        IDataView data = ml.Transforms.Conversion.MapValueToKey("Label").Fit(GlueData.LoadSingle(ml, "sst2", "train", 32)).Transform(GlueData.LoadSingle(ml, "sst2", "train", 32));
        var model = ml.Bone.TextClassification(options).Fit(data);
        float[][] scores = Scores(model.Transform(ml.Data.TakeRows(data, 8)));
        Assert.IsTrue(scores.All(s => s.All(float.IsFinite) && Math.Abs(s.Sum() - 1) < 1e-2), "bf16 scoring gives probabilities");
        Assert.IsTrue(model.TrainingHistory.All(h => double.IsFinite(h.Loss)));
    }

    [TestMethod]
    [Timeout(600_000)]
    public void PeftExportLoadsIntoAFreshModel()
    {
        var ml = new MLContext(seed: 6);
        var options = Options(AdapterKind.Bat, epochs: 1);
        options.MaxSteps = 10;
        IDataView data = ml.Transforms.Conversion.MapValueToKey("Label").Fit(GlueData.LoadSingle(ml, "sst2", "train", 320)).Transform(GlueData.LoadSingle(ml, "sst2", "train", 320));
        var model = ml.Bone.TextClassification(options).Fit(data);
        string peft = Path.Combine(_dir, "peft-bat");
        model.ExportPeftAdapter(peft);
        StringAssert.Contains(File.ReadAllText(Path.Combine(peft, "adapter_config.json")), "\"init_weights\": \"bat\"");

        var fresh = RobertaForSequenceClassification.FromPretrained(_base, numLabels: 2);
        PeftAdapterDirectory.Load(fresh, peft);
        var tokenizer = Microsoft.ML.Bone.Tokenization.RobertaTokenizer.FromDirectory(_base);
        var row = ml.Data.CreateEnumerable<GlueData.Single>(GlueData.LoadSingle(ml, "sst2", "train", 1), false).Single();
        float[] expected = Scores(model.Transform(ml.Data.TakeRows(data, 1)))[0];
        float[] actual = Microsoft.ML.Bone.Tasks.SequenceClassification.Predict(fresh, [tokenizer.EncodeSingle(row.Sentence1, 64)], tokenizer.PadId, 1, softmax: true)[0];
        for (int c = 0; c < 2; c++) Assert.AreEqual(expected[c], actual[c], 1e-5);
    }
}
