using System.Text;
using Microsoft.ML.Bone.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.IO;

[TestClass]
public sealed class SafetensorsTests
{
    private string _dir = "";

    [TestInitialize]
    public void Init() => _dir = Directory.CreateTempSubdirectory("bone-st-").FullName;

    [TestCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    private static byte[] Bytes(Tensor t)
    {
        using var c = t.contiguous();
        return c.numel() == 0 ? [] : c.bytes.ToArray();
    }

    [TestMethod]
    public void RoundTripsEveryDtypeBitExactly()
    {
        using var scope = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>
        {
            ["f32"] = randn(3, 5),
            ["f16"] = randn(4, 2).to(ScalarType.Float16),
            ["bf16"] = randn(2, 3, 2).to(ScalarType.BFloat16),
            ["f64"] = randn(7, dtype: ScalarType.Float64),
            ["i64"] = tensor(new long[] { long.MinValue, -1, 0, long.MaxValue }),
            ["i32"] = tensor(new[] { int.MinValue, 7 }),
            ["i16"] = tensor(new short[] { -3, 300 }),
            ["i8"] = tensor(new sbyte[] { -128, 127 }),
            ["u8"] = tensor(new byte[] { 0, 255, 9 }),
            ["bool"] = tensor(new[] { true, false, true }),
            ["scalar"] = tensor(3.5f),
            ["empty"] = zeros(0, 4),
            ["transposed"] = randn(3, 4).t(),
        };
        string path = PathOf("all.safetensors");
        SafetensorsWriter.Write(path, tensors, new Dictionary<string, string> { ["format"] = "pt", ["note"] = "é" });

        using var file = SafetensorsFile.Open(path);
        Assert.AreEqual("é", file.Metadata["note"]);
        CollectionAssert.AreEquivalent(tensors.Keys.ToArray(), file.Entries.Select(e => e.Name).ToArray());
        foreach (var (name, expected) in tensors)
        {
            Tensor actual = file.Load(name);
            Assert.AreEqual(expected.dtype, actual.dtype, name);
            CollectionAssert.AreEqual(expected.shape, actual.shape, name);
            CollectionAssert.AreEqual(Bytes(expected), Bytes(actual), name);
        }
        Assert.AreEqual(SafetensorsDType.BF16, file["bf16"].DType);
        Assert.AreEqual(ScalarType.Float32, file.Load("bf16", ScalarType.Float32).dtype);
    }

    [TestMethod]
    public void ReadsAFileWrittenByHand()
    {
        // BF16 80 3F / 00 40 are 1.0 and 2.0; F16 00 3C is 1.0; I64 little-endian.
        string header = """{"__metadata__":{"format":"pt"},"b":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]},"h":{"dtype":"F16","shape":[1,1],"data_offsets":[4,6]},"n":{"dtype":"I64","shape":[],"data_offsets":[6,14]}}""";
        string path = PathOf("hand.safetensors");
        using (var w = new BinaryWriter(File.Create(path)))
        {
            w.Write((ulong)Encoding.UTF8.GetByteCount(header));
            w.Write(Encoding.UTF8.GetBytes(header));
            w.Write(new byte[] { 0x80, 0x3F, 0x00, 0x40, 0x00, 0x3C });
            w.Write(-42L);
        }
        using var scope = NewDisposeScope();
        using var file = SafetensorsFile.Open(path);
        CollectionAssert.AreEqual(new[] { 1f, 2f }, file.Load("b", ScalarType.Float32).data<float>().ToArray());
        Assert.AreEqual(1f, file.Load("h", ScalarType.Float32).item<float>());
        Tensor n = file.Load("n");
        Assert.AreEqual(0, n.ndim);
        Assert.AreEqual(-42L, n.item<long>());
    }

    [TestMethod]
    public void WriterLayoutMatchesTheFormat()
    {
        using var scope = NewDisposeScope();
        string path = PathOf("w.safetensors");
        SafetensorsWriter.Write(path, [new("a", tensor(new[] { 1f, 2f, 3f })), new("b", tensor(new short[] { 5 }))]);
        var (header, dataStart) = HandWrittenSafetensors.ReadHeader(path);
        Assert.AreEqual(0, (dataStart - 8) % 8, "header padded to a multiple of 8 bytes");
        var a = header.RootElement.GetProperty("a");
        Assert.AreEqual("F32", a.GetProperty("dtype").GetString());
        CollectionAssert.AreEqual(new long[] { 0, 12 }, a.GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray());
        CollectionAssert.AreEqual(new long[] { 12, 14 }, header.RootElement.GetProperty("b").GetProperty("data_offsets").EnumerateArray().Select(e => e.GetInt64()).ToArray());
        CollectionAssert.AreEqual(new[] { 1f, 2f, 3f }, HandWrittenSafetensors.ReadF32(path, "a"));
        Assert.AreEqual(dataStart + 14, new FileInfo(path).Length);
    }

    [TestMethod]
    public void WriterAlignsEveryTensorToItsElementSize()
    {
        using var scope = NewDisposeScope();
        string path = PathOf("aligned.safetensors");
        SafetensorsWriter.Write(path, [new("a.u8", tensor(new byte[] { 1, 2, 3 })), new("b.f16", ones(3).to(ScalarType.Float16)), new("c.i64", tensor(new long[] { 7 })), new("d.f32", ones(1))]);
        using var file = SafetensorsFile.Open(path);
        Assert.IsTrue(file.Entries.All(e => e.DataBegin % e.DType.ElementSize() == 0), string.Join(", ", file.Entries.Select(e => $"{e.Name}@{e.DataBegin}")));
        Assert.AreEqual(7L, file.Load("c.i64").item<long>());
    }

    private string WriteRaw(string header, byte[] data, ulong? declaredLength = null)
    {
        string path = PathOf("bad.safetensors");
        byte[] json = Encoding.UTF8.GetBytes(header);
        using var w = new BinaryWriter(File.Create(path));
        w.Write(declaredLength ?? (ulong)json.Length);
        w.Write(json);
        w.Write(data);
        return path;
    }

    private void AssertRejected(string path, string expected)
    {
        var e = Assert.ThrowsExactly<SafetensorsFormatException>(() => SafetensorsFile.Open(path).Dispose());
        StringAssert.StartsWith(e.Message, path + ": ");
        StringAssert.Contains(e.Message, expected);
    }

    [TestMethod]
    public void RejectsFileShorterThanItsLengthField()
    {
        string path = PathOf("short.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        AssertRejected(path, "shorter than the 8-byte header length");
    }

    [TestMethod]
    public void RejectsHeaderLengthBeyondTheFile() =>
        AssertRejected(WriteRaw("{}", [], declaredLength: 4096), "header length 4096 goes beyond the end of the file");

    [TestMethod]
    public void RejectsHugeHeaderLengthWithoutAllocating() =>
        AssertRejected(WriteRaw("{}", [], declaredLength: 1UL << 62), "goes beyond the end of the file");

    [TestMethod]
    public void RejectsInvalidJson() => AssertRejected(WriteRaw("{\"a\": ", []), "header is not valid JSON");

    [TestMethod]
    public void RejectsNonObjectHeader() => AssertRejected(WriteRaw("[1,2]", []), "header must be a JSON object");

    [TestMethod]
    public void RejectsUnknownDtype() =>
        AssertRejected(WriteRaw("""{"a":{"dtype":"F8_E4M3X","shape":[1],"data_offsets":[0,1]}}""", [0]), "unknown or unsupported dtype 'F8_E4M3X'");

    [TestMethod]
    public void RejectsOffsetsBeyondTheData() =>
        AssertRejected(WriteRaw("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", new byte[4]), "beyond the 4-byte data section");

    [TestMethod]
    public void RejectsOverlappingTensors() =>
        AssertRejected(WriteRaw("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", new byte[12]), "overlaps tensor 'a'");

    [TestMethod]
    public void RejectsGapsBetweenTensors() =>
        AssertRejected(WriteRaw("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}""", new byte[12]), "gap of 4 bytes before tensor 'b'");

    [TestMethod]
    public void RejectsTrailingUncoveredData() =>
        AssertRejected(WriteRaw("""{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}""", new byte[9]), "5 bytes not covered");

    [TestMethod]
    public void RejectsShapeSizeMismatch() =>
        AssertRejected(WriteRaw("""{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}""", new byte[12]), "shape [2, 2] of F32 needs 16 bytes");

    [TestMethod]
    public void RejectsDuplicateNames() =>
        AssertRejected(WriteRaw("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}""", new byte[2]), "tensor 'a' appears twice");

    [TestMethod]
    public void RejectsNegativeDimension() =>
        AssertRejected(WriteRaw("""{"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,0]}}""", []), "invalid dimension -1");

    [TestMethod]
    public void RejectsOverflowingShape() =>
        AssertRejected(WriteRaw("""{"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}""", []), "overflows");

    [TestMethod]
    public void RejectsMissingOrReversedOffsets()
    {
        AssertRejected(WriteRaw("""{"a":{"dtype":"U8","shape":[1]}}""", [0]), "needs data_offsets");
        AssertRejected(WriteRaw("""{"a":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}}""", [0]), "needs data_offsets");
    }

    [TestMethod]
    public void RejectsNonStringMetadata() =>
        AssertRejected(WriteRaw("""{"__metadata__":{"format":1}}""", []), "__metadata__ value 'format' is not a string");

    [TestMethod]
    public void WriterLeavesNothingBehindOnFailure()
    {
        using var scope = NewDisposeScope();
        Assert.ThrowsExactly<DirectoryNotFoundException>(() => SafetensorsWriter.Write(Path.Combine(_dir, "missing", "x.safetensors"), [new("a", zeros(1))]));

        string path = PathOf("keep.safetensors");
        File.WriteAllText(path, "old");
        var e = Assert.ThrowsExactly<ArgumentException>(() => SafetensorsWriter.Write(path, [new("a", zeros(1)), new("a", zeros(2))]));
        StringAssert.Contains(e.Message, "'a'");
        Assert.ThrowsExactly<ArgumentException>(() => SafetensorsWriter.Write(path, [new("c", zeros(1, dtype: ScalarType.ComplexFloat32))]));
        Assert.AreEqual("old", File.ReadAllText(path));
        CollectionAssert.AreEqual(new[] { "keep.safetensors" }, Directory.GetFiles(_dir).Select(Path.GetFileName).ToArray());
    }

    private void WriteShards(bool missingTensor = false)
    {
        HandWrittenSafetensors.Write(PathOf("model-00001-of-00002.safetensors"), [new("a.weight", [2], [1, 2]), new("b.weight", [1], [3])]);
        HandWrittenSafetensors.Write(PathOf("model-00002-of-00002.safetensors"), [new("c.weight", [2, 1], [4, 5])]);
        string cShard = "model-00002-of-00002.safetensors";
        string extra = missingTensor ? ", \"d.weight\": \"" + cShard + "\"" : "";
        File.WriteAllText(PathOf("model.safetensors.index.json"),
            "{\"metadata\": {\"total_size\": 20}, \"weight_map\": {\"a.weight\": \"model-00001-of-00002.safetensors\", "
            + "\"b.weight\": \"model-00001-of-00002.safetensors\", \"c.weight\": \"" + cShard + "\"" + extra + "}}");
    }

    [TestMethod]
    public void OpensShardedCheckpoints()
    {
        WriteShards();
        using var scope = NewDisposeScope();
        using var checkpoint = SafetensorsCheckpoint.Open(_dir);
        CollectionAssert.AreEquivalent(new[] { "a.weight", "b.weight", "c.weight" }, checkpoint.Names.ToArray());
        CollectionAssert.AreEqual(new[] { "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors" }, checkpoint.ShardFiles.ToArray());
        Assert.AreEqual("model-00002-of-00002.safetensors", checkpoint.ShardOf("c.weight"));
        CollectionAssert.AreEqual(new[] { 4f, 5f }, checkpoint.Load("c.weight").data<float>().ToArray());
        CollectionAssert.AreEqual(new[] { 1f, 2f }, checkpoint.Load("a.weight").data<float>().ToArray());
        CollectionAssert.AreEqual(new long[] { 2, 1 }, checkpoint.Entry("c.weight").Shape);
    }

    [TestMethod]
    public void ShardedCheckpointErrorsNameTheIndex()
    {
        WriteShards(missingTensor: true);
        string index = PathOf("model.safetensors.index.json");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => SafetensorsCheckpoint.Open(_dir)).Message, "tensor 'd.weight' is listed in shard");

        File.WriteAllText(index, """{"weight_map": {"a.weight": "model-00009-of-00009.safetensors"}}""");
        var missing = Assert.ThrowsExactly<FileNotFoundException>(() => SafetensorsCheckpoint.Open(_dir));
        StringAssert.Contains(missing.Message, index);
        StringAssert.Contains(missing.Message, "model-00009-of-00009.safetensors");

        File.WriteAllText(index, """{"weight_map": ["a"]}""");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => SafetensorsCheckpoint.Open(_dir)).Message, "weight_map");
        File.WriteAllText(index, "{");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => SafetensorsCheckpoint.Open(_dir)).Message, "not valid JSON");

        File.WriteAllText(index, """{"weight_map": {"a.weight": "model-00002-of-00002.safetensors", "c.weight": "model-00002-of-00002.safetensors"}}""");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => SafetensorsCheckpoint.Open(_dir)).Message, "tensor 'a.weight' is listed in shard");

        // b.weight is in the first shard, but the index does not list it: tools that read whole shards would load it.
        File.WriteAllText(index, """{"weight_map": {"a.weight": "model-00001-of-00002.safetensors", "c.weight": "model-00002-of-00002.safetensors"}}""");
        var unlisted = Assert.ThrowsExactly<InvalidDataException>(() => SafetensorsCheckpoint.Open(_dir));
        StringAssert.Contains(unlisted.Message, index);
        StringAssert.Contains(unlisted.Message, "tensor 'b.weight' is in shard 'model-00001-of-00002.safetensors' but the index does not list it");
    }

    [TestMethod]
    public void IndexRoundTrips()
    {
        string index = PathOf("model.safetensors.index.json");
        SafetensorsCheckpoint.WriteIndex(index, new Dictionary<string, string> { ["x"] = "s1.safetensors", ["y"] = "s2.safetensors" }, 123);
        using var doc = System.Text.Json.JsonDocument.Parse(File.ReadAllText(index));
        Assert.AreEqual(123, doc.RootElement.GetProperty("metadata").GetProperty("total_size").GetInt64());
        Assert.AreEqual("s2.safetensors", doc.RootElement.GetProperty("weight_map").GetProperty("y").GetString());
    }

    [TestMethod]
    public void AFileUsedAfterDisposeThrowsInsteadOfCrashing()
    {
        string path = Path.Combine(Path.GetTempPath(), $"bone-disposed-{Guid.NewGuid():N}.safetensors");
        try
        {
            using (var scope = NewDisposeScope()) SafetensorsWriter.Write(path, [new("w", ones(3, 2))]);
            var file = SafetensorsFile.Open(path);
            file.Dispose();
            Assert.ThrowsExactly<ObjectDisposedException>(() => file.Load("w"));
            var checkpoint = SafetensorsCheckpoint.Open(path);
            checkpoint.Dispose();
            Assert.ThrowsExactly<ObjectDisposedException>(() => checkpoint.Load("w"));
        }
        finally { File.Delete(path); }
    }
}
