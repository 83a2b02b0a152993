using Microsoft.ML.Bone.Models.Roberta;

namespace Microsoft.ML.Bone.Tests.TextClassification;

/// <summary>Bad input gets an error that names the column, option or file and says what is wrong.</summary>
[TestClass]
public sealed class TextClassificationErrorTests
{
    private static string _dir = "";
    private static string _model = "";

    [ClassInitialize]
    public static void CreateModel(TestContext _)
    {
        _dir = Directory.CreateTempSubdirectory("bone-errors-").FullName;
        _model = GlueData.TinyModel(Path.Combine(_dir, "tiny"), hidden: 16);
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_dir, recursive: true);

    private sealed class Row
    {
        public string Sentence1 { get; set; } = "";
        public string Label { get; set; } = "";
        public float Number { get; set; }
    }

    private static IDataView Data(MLContext ml, int rows = 8) =>
        ml.Data.LoadFromEnumerable(Enumerable.Range(0, rows).Select(i => new Row { Sentence1 = i % 2 == 0 ? "good film" : "bad film", Label = (i % 2).ToString(), Number = i }));

    private static BoneTextClassificationOptions Options() => new() { ModelPath = _model, Rank = 4, MaxEpochs = 1, BatchSize = 4, MaxSequenceLength = 16 };

    [TestMethod]
    public void MissingColumnIsNamed()
    {
        var ml = new MLContext(seed: 1);
        var options = Options();
        options.Sentence1ColumnName = "Text";
        var e = Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Fit(Data(ml)));
        StringAssert.Contains(e.Message, "'Text' not found");
    }

    [TestMethod]
    public void WrongColumnTypeIsNamed()
    {
        var ml = new MLContext(seed: 1);
        var options = Options();
        options.Sentence1ColumnName = "Number";
        var e = Assert.ThrowsExactly<ArgumentException>(() => ml.Bone.TextClassification(options).Fit(ml.Transforms.Conversion.MapValueToKey("Label").Fit(Data(ml)).Transform(Data(ml))));
        StringAssert.Contains(e.Message, "'Number'");
        StringAssert.Contains(e.Message, "must be text");
    }

    [TestMethod]
    public void TextLabelsMustBeMappedToKeys()
    {
        var ml = new MLContext(seed: 1);
        var e = Assert.ThrowsExactly<ArgumentException>(() => ml.Bone.TextClassification(Options()).Fit(Data(ml)));
        StringAssert.Contains(e.Message, "Label column 'Label'");
        StringAssert.Contains(e.Message, "MapValueToKey");
    }

    [TestMethod]
    public void EmptyDataIsRejected()
    {
        var ml = new MLContext(seed: 1);
        var keyed = ml.Transforms.Conversion.MapValueToKey("Label").Fit(Data(ml)).Transform(Data(ml, rows: 0));
        var e = Assert.ThrowsExactly<ArgumentException>(() => ml.Bone.TextClassification(Options()).Fit(keyed));
        StringAssert.Contains(e.Message, "no rows");
    }

    [TestMethod]
    public void UnreadableModelDirectoryIsNamed()
    {
        var ml = new MLContext(seed: 1);
        var options = Options();
        options.ModelPath = Path.Combine(_dir, "missing");
        StringAssert.Contains(Assert.ThrowsExactly<DirectoryNotFoundException>(() => ml.Bone.TextClassification(options)).Message, "missing");

        string broken = Path.Combine(_dir, "broken");
        Directory.CreateDirectory(broken);
        File.WriteAllText(Path.Combine(broken, "config.json"), "{ nope");
        options.ModelPath = broken;
        var e = Assert.ThrowsExactly<InvalidDataException>(() => ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Fit(Data(ml)));
        StringAssert.Contains(e.Message, Path.Combine(broken, "config.json"));
    }

    [TestMethod]
    public void BadOptionsAreNamed()
    {
        var ml = new MLContext(seed: 1);
        var options = Options();
        options.MaxSequenceLength = 2;
        Assert.AreEqual("MaxSequenceLength", Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => ml.Bone.TextClassification(options)).ParamName);
        options = Options();
        options.Adapter = AdapterKind.Bat;
        options.Rank = 5;
        var e = Assert.ThrowsExactly<ArgumentException>(() => ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Fit(Data(ml)));
        StringAssert.Contains(e.Message, "[r, r] blocks");
    }

    [TestMethod]
    public void SavedModelRefusesADifferentBase()
    {
        var ml = new MLContext(seed: 1);
        string baseCopy = Path.Combine(_dir, "base-copy");
        Directory.CreateDirectory(baseCopy);
        foreach (string file in Directory.GetFiles(_model)) File.Copy(file, Path.Combine(baseCopy, Path.GetFileName(file)));
        var options = Options();
        options.ModelPath = baseCopy;
        var data = Data(ml);
        var model = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Fit(data);
        string zip = Path.Combine(_dir, "model.zip");
        ml.Model.Save(model, data.Schema, zip);

        // An edited config.json of the same size: the digest taken while loading refuses it.
        string config = Path.Combine(baseCopy, "config.json");
        string original = File.ReadAllText(config);
        Assert.IsTrue(original.Contains("\"layer_norm_eps\": 1E-05", StringComparison.Ordinal), original);
        File.WriteAllText(config, original.Replace("\"layer_norm_eps\": 1E-05", "\"layer_norm_eps\": 2E-05", StringComparison.Ordinal));
        var edited = Assert.ThrowsExactly<InvalidDataException>(() => new MLContext().Bone.LoadModel(zip, out _));
        StringAssert.Contains(edited.Message, "config.json");
        StringAssert.Contains(edited.Message, "different base model");
        File.WriteAllText(config, original);
        // Disposed, so the next load reads the base from disk again rather than sharing this one's (verified) copy.
        ((IDisposable)new MLContext().Bone.LoadModel(zip, out _)).Dispose();

        // Another model written over the base: same names and shapes, different weights.
        GlueData.TinyModel(baseCopy, hidden: 16, seed: 99);
        var e = Assert.ThrowsExactly<InvalidDataException>(() => new MLContext().Bone.LoadModel(zip, out _));
        StringAssert.Contains(e.Message, "SHA-256");
        StringAssert.Contains(e.Message, "model.safetensors");

        // A moved base: LoadModel accepts another directory that holds the same weights.
        var fresh = new MLContext();
        Assert.IsNotNull(fresh.Bone.LoadModel(zip, out _, baseModelPath: _model));
        Directory.Delete(baseCopy, recursive: true);
        StringAssert.Contains(Assert.ThrowsExactly<DirectoryNotFoundException>(() => fresh.Bone.LoadModel(zip, out _)).Message, "baseModelPath");
    }

    [TestMethod]
    public void APlainMLContextLoadsTheZipWithoutAnyRegistration()
    {
        var ml = new MLContext(seed: 1);
        var data = Data(ml);
        var model = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(Options())).Fit(data);
        string zip = Path.Combine(_dir, "registration.zip");
        ml.Model.Save(model, data.Schema, zip);
        float[] Scores(MLContext c, ITransformer t) => c.Data.CreateEnumerable<ScoreRow>(t.Transform(data), false).SelectMany(r => r.Score).ToArray();
        float[] expected = Scores(ml, model);

        // As every ML.NET user does first: a fresh context, Model.Load, nothing else.
        var fresh = new MLContext();
        CollectionAssert.AreEqual(expected, Scores(fresh, fresh.Model.Load(zip, out _)));
        // Registering the assembly by hand (as ML.NET's docs suggest for extensions) changes nothing.
        var registered = new MLContext();
        registered.ComponentCatalog.RegisterAssembly(typeof(BoneCatalog).Assembly);
        CollectionAssert.AreEqual(expected, Scores(registered, registered.Model.Load(zip, out _)));
        // And the Stream overloads: ML.NET's own and mlContext.Bone.LoadModel's.
        using (var stream = File.OpenRead(zip)) CollectionAssert.AreEqual(expected, Scores(fresh, new MLContext().Model.Load(stream, out _)));
        using (var stream = File.OpenRead(zip)) CollectionAssert.AreEqual(expected, Scores(fresh, new MLContext().Bone.LoadModel(stream, out _)));
    }

    private sealed class ScoreRow
    {
        public float[] Score { get; set; } = [];
    }

    [TestMethod]
    public void CancellationStopsFit()
    {
        var ml = new MLContext(seed: 1);
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        var options = Options();
        options.CancellationToken = cts.Token;
        Assert.ThrowsExactly<OperationCanceledException>(() => ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Fit(Data(ml)));
    }
}

/// <summary>The same MLContext seed gives the same model. Runs alone: dropout draws from torch's global generator.</summary>
[TestClass]
[DoNotParallelize]
public sealed class TextClassificationDeterminismTests
{
    [TestMethod]
    public void SameSeedSameScores()
    {
        string dir = Directory.CreateTempSubdirectory("bone-determinism-").FullName;
        try
        {
            string model = GlueData.TinyModel(Path.Combine(dir, "tiny"), hidden: 16);
            float[] Run(int seed)
            {
                var ml = new MLContext(seed: seed);
                IDataView data = GlueData.LoadSingle(ml, "sst2", "train", 200);
                var fitted = ml.Transforms.Conversion.MapValueToKey("Label")
                    .Append(ml.Bone.TextClassification(new BoneTextClassificationOptions { ModelPath = model, Rank = 4, MaxEpochs = 1, BatchSize = 16, MaxSequenceLength = 32, LearningRate = 1e-2 }))
                    .Fit(data);
                return ml.Data.CreateEnumerable<ScoreRow>(fitted.Transform(ml.Data.TakeRows(data, 20)), false).SelectMany(r => r.Score).ToArray();
            }
            float[] first = Run(1), second = Run(1), other = Run(2);
            CollectionAssert.AreEqual(first, second, "same seed");
            CollectionAssert.AreNotEqual(first, other, "another seed trains differently");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    private sealed class ScoreRow
    {
        public float[] Score { get; set; } = [];
    }
}
