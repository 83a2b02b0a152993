using System.IO.Compression;
using System.Text.Json.Nodes;
using Microsoft.ML.Bone.Persistence;
using Microsoft.ML.Bone.Tasks;
using Microsoft.ML.Bone.Tests.TextClassification;

namespace Microsoft.ML.Bone.Tests.Persistence;

/// <summary>
/// A model zip is trusted only as far as it checks out: every entry against the size and SHA-256 recorded when it
/// was saved (System.IO.Compression checks no CRC on read), every declared size against what its compressed bytes
/// can hold, and the settings record field by field.
/// </summary>
[TestClass]
public sealed class ModelZipIntegrityTests
{
    private static string _dir = "";
    private static string _zip = "";

    private sealed class Row
    {
        public string Sentence1 { get; set; } = "";
        public string Label { get; set; } = "";
    }

    [ClassInitialize]
    public static void SaveModel(TestContext _)
    {
        _dir = Directory.CreateTempSubdirectory("bone-zip-integrity-").FullName;
        string model = GlueData.TinyModel(Path.Combine(_dir, "tiny"), hidden: 16);
        var ml = new MLContext(seed: 1);
        IDataView data = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 8).Select(i => new Row { Sentence1 = i % 2 == 0 ? "good film" : "bad film", Label = (i % 2).ToString() }));
        var options = new BoneTextClassificationOptions { ModelPath = model, Rank = 4, MaxEpochs = 1, BatchSize = 4, MaxSequenceLength = 16, LearningRate = 1e-2 };
        using var fitted = (IDisposable)ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Fit(data);
        _zip = Path.Combine(_dir, "model.zip");
        ml.Bone.SaveModel((ITransformer)fitted, data.Schema, _zip);
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_dir, recursive: true);

    private static string Copy(string name)
    {
        string copy = Path.Combine(_dir, name);
        File.Copy(_zip, copy, overwrite: true);
        return copy;
    }

    // Rewrites one entry with one byte changed: what a bit flip on disk or in transfer does, which the zip's
    // CRC would catch if anything checked it.
    private static void FlipByte(string zip, string entrySuffix, Func<int, int> position)
    {
        using var archive = ZipFile.Open(zip, ZipArchiveMode.Update);
        ZipArchiveEntry entry = archive.Entries.Single(e => e.FullName.EndsWith(entrySuffix, StringComparison.Ordinal));
        string name = entry.FullName;
        byte[] bytes;
        using (var s = entry.Open()) { var m = new MemoryStream(); s.CopyTo(m); bytes = m.ToArray(); }
        entry.Delete();
        bytes[position(bytes.Length)] ^= 0x01;
        using var w = archive.CreateEntry(name).Open();
        w.Write(bytes);
    }

    private static InvalidDataException LoadFails(string zip) =>
        Assert.ThrowsExactly<InvalidDataException>(() => ((IDisposable)new MLContext().Bone.LoadModel(zip, out _)).Dispose());

    [TestMethod]
    public void TheSavedZipLoadsAndRecordsEveryEntry()
    {
        ((IDisposable)new MLContext().Bone.LoadModel(_zip, out _)).Dispose();
        using var archive = ZipFile.OpenRead(_zip);
        string[] ours = [.. archive.Entries.Select(e => e.Name).Where(n => n is "Adapter.safetensors" || n.StartsWith("Tokenizer.", StringComparison.Ordinal))];
        Assert.IsTrue(ours.Contains("Adapter.safetensors") && ours.Length >= 2, string.Join(", ", ours));
    }

    [TestMethod]
    public void AFlippedBitInTheAdapterIsRefused()
    {
        string zip = Copy("flipped-adapter.zip");
        FlipByte(zip, "/Adapter.safetensors", length => length - 3);   // inside the last tensor's data: still parses
        var e = LoadFails(zip);
        StringAssert.Contains(e.Message, "'Adapter.safetensors' is corrupted");
        StringAssert.Contains(e.Message, "SHA-256");
    }

    [TestMethod]
    public void AFlippedBitInATokenizerFileIsRefused()
    {
        string zip = Copy("flipped-tokenizer.zip");
        FlipByte(zip, "/Tokenizer.vocab.json", length => length / 2);
        var e = LoadFails(zip);
        StringAssert.Contains(e.Message, "Tokenizer.vocab.json");
        StringAssert.Contains(e.Message, "corrupted");
    }

    [TestMethod]
    public void AnEntryDeclaringMoreThanItsCompressedBytesCanHoldIsRefusedBeforeExtracting()
    {
        string zip = Copy("bomb.zip");
        byte[] bytes = File.ReadAllBytes(zip);
        // The central directory header of the adapter entry: declare 4 GB uncompressed.
        byte[] name = "Adapter.safetensors"u8.ToArray();
        int header = -1;
        for (int i = 0; i + 46 < bytes.Length; i++)
            if (bytes[i] == 0x50 && bytes[i + 1] == 0x4b && bytes[i + 2] == 1 && bytes[i + 3] == 2)
            {
                int nameLength = BitConverter.ToUInt16(bytes, i + 28);
                if (bytes.AsSpan(i + 46, nameLength).EndsWith(name)) { header = i; break; }
            }
        Assert.IsTrue(header > 0, "central directory header found");
        BitConverter.GetBytes(0xFFFF_0000u).CopyTo(bytes, header + 24);
        File.WriteAllBytes(zip, bytes);
        string before = string.Join(",", Directory.EnumerateFileSystemEntries(TempPaths.ProcessDirectory).Order());
        var e = LoadFails(zip);
        StringAssert.Contains(e.Message, "Adapter.safetensors");
        StringAssert.Contains(e.Message, "compressed");
        Assert.AreEqual(before, string.Join(",", Directory.EnumerateFileSystemEntries(TempPaths.ProcessDirectory).Order()), "nothing extracted");
    }

    [TestMethod]
    public void AMissingEntryIsNamed()
    {
        string zip = Copy("missing-entry.zip");
        using (var archive = ZipFile.Open(zip, ZipArchiveMode.Update))
            archive.Entries.Single(e => e.Name == "Adapter.safetensors").Delete();
        var e = LoadFails(zip);
        StringAssert.Contains(e.Message, "'Adapter.safetensors' is missing");
    }

    private static JsonObject ValidRecord() => JsonNode.Parse(new SavedModel
    {
        Base = new BaseModelRecord
        {
            Architecture = "llama", Path = "/models/tiny", Embedded = false, DType = BaseDType.Float32,
            Files = new() { ["model.safetensors"] = new FileIdentity(1234, new string('a', 64)), ["config.json"] = new FileIdentity(56, new string('b', 64)) },
        },
        Adapter = AdapterKind.Bone, AdapterConfigJson = "{}", MaxSequenceLength = 512, BatchSize = 8, Threads = 0,
        CausalLM = new CausalLMSettings
        {
            Prompt = "Prompt", Response = "Response", Completion = "Completion", PromptTemplate = "Q: {prompt}\nA:",
            Generation = new GenerationOptions(), StopStrings = ["\n\n"],
        },
        Entries = new() { ["Adapter.safetensors"] = new FileIdentity(99, new string('c', 64)) },
    }.ToJson())!.AsObject();

    [TestMethod]
    public void TheSettingsRecordIsCheckedFieldByField()
    {
        Assert.AreEqual(512, SavedModel.FromJson(ValidRecord().ToJsonString(), "zip").MaxSequenceLength, "the valid record reads");
        var cases = new (string Field, Action<JsonObject> Edit)[]
        {
            ("MaxSequenceLength", r => r["MaxSequenceLength"] = 0),
            ("MaxSequenceLength", r => r["MaxSequenceLength"] = 2_000_000_000),
            ("BatchSize", r => r["BatchSize"] = -3),
            ("Threads", r => r["Threads"] = 100_000),
            ("DType", r => r["Base"]!["DType"] = 7),
            ("DType", r => r["Base"]!["DType"] = "Float8"),
            ("Path", r => r["Base"]!["Path"] = null),
            ("Base.Path", r => r["Base"]!["Path"] = " "),
            ("Base", r => r.Remove("Base")),
            ("Surprise", r => r["Surprise"] = 1),
            ("Base.Files['../x']", r => r["Base"]!["Files"]!["../x"] = new JsonObject { ["Size"] = 1, ["Sha256"] = new string('a', 64) }),
            ("Base.Files['model.safetensors'].Sha256", r => r["Base"]!["Files"]!["model.safetensors"]!["Sha256"] = "xyz"),
            ("Entries['Adapter.safetensors'].Size", r => r["Entries"]!["Adapter.safetensors"]!["Size"] = -1),
            ("AdapterConfigJson", r => r["AdapterConfigJson"] = null),
            ("AdapterConfigJson", r => r["Adapter"] = "FullFineTuning"),
            ("CausalLM.PromptTemplate", r => r["CausalLM"]!["PromptTemplate"] = "no placeholder"),
            ("CausalLM.Generation.TopP", r => r["CausalLM"]!["Generation"]!["TopP"] = 2.5),
            ("CausalLM.Generation.MaxNewTokens", r => r["CausalLM"]!["Generation"]!["MaxNewTokens"] = 100_000_000),
            ("CausalLM.StopStrings", r => r["CausalLM"]!["StopStrings"] = new JsonArray("")),
            ("TextClassification / CausalLM", r => r.Remove("CausalLM")),
        };
        foreach (var (field, edit) in cases)
        {
            JsonObject record = ValidRecord();
            edit(record);
            var e = Assert.ThrowsExactly<InvalidDataException>(() => SavedModel.FromJson(record.ToJsonString(), "my.zip"), field);
            StringAssert.StartsWith(e.Message, "my.zip: ", field);
            StringAssert.Contains(e.Message, field, $"the message names the field: {e.Message}");
        }
    }

    [TestMethod]
    public void AClassifierRecordNeedsDistinctLabelsOfAKnownType()
    {
        JsonObject Classifier()
        {
            JsonObject r = ValidRecord();
            r.Remove("CausalLM");
            r["TextClassification"] = new JsonObject
            {
                ["Sentence1"] = "Sentence1", ["Label"] = "Label", ["Score"] = "Score", ["PredictedLabel"] = "PredictedLabel",
                ["IsRegression"] = false, ["LabelNames"] = new JsonArray("neg", "pos"), ["LabelValueType"] = "Text",
            };
            return r;
        }
        Assert.IsNotNull(SavedModel.FromJson(Classifier().ToJsonString(), "zip").TextClassification);
        foreach (var (field, edit) in new (string, Action<JsonObject>)[]
        {
            ("TextClassification.LabelNames", r => r["TextClassification"]!["LabelNames"] = new JsonArray("pos", "pos")),
            ("TextClassification.LabelValueType", r => r["TextClassification"]!["LabelValueType"] = "Decimal"),
            ("TextClassification.LabelNames", r => r["TextClassification"]!["IsRegression"] = true),
            ("TextClassification.Sentence1", r => r["TextClassification"]!["Sentence1"] = ""),
        })
        {
            JsonObject record = Classifier();
            edit(record);
            var e = Assert.ThrowsExactly<InvalidDataException>(() => SavedModel.FromJson(record.ToJsonString(), "my.zip"), field);
            StringAssert.Contains(e.Message, field);
        }
    }
}
