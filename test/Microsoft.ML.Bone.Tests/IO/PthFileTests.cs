using System.Buffers.Binary;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.ML.Bone.IO;
using TorchSharp;
using static Microsoft.ML.Bone.Tests.IO.HandWrittenPth;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.IO;

[TestClass]
public sealed class PthFileTests
{
    private static readonly string FixtureDirectory = Path.Combine(AppContext.BaseDirectory, "IO", "PthFixtures");
    private static readonly JsonObject Manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(FixtureDirectory, "pth_fixtures.json")))!.AsObject();

    private string _dir = "";

    [TestInitialize]
    public void Init() => _dir = Directory.CreateTempSubdirectory("bone-pth-").FullName;

    [TestCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);

    private static string Fixture(string name) => Path.Combine(FixtureDirectory, name);

    private static ScalarType DTypeOf(string torchName) => torchName switch
    {
        "bfloat16" => ScalarType.BFloat16,
        "float16" => ScalarType.Float16,
        "float32" => ScalarType.Float32,
        "float64" => ScalarType.Float64,
        "int64" => ScalarType.Int64,
        "int32" => ScalarType.Int32,
        "int16" => ScalarType.Int16,
        "int8" => ScalarType.Int8,
        "uint8" => ScalarType.Byte,
        "bool" => ScalarType.Bool,
        _ => throw new AssertFailedException($"unexpected dtype {torchName} in the manifest"),
    };

    private static long[] Longs(JsonNode? node) => node!.AsArray().Select(n => n!.GetValue<long>()).ToArray();

    // Compares a loaded tensor with the manifest's values exactly: floats through float64 (every fixture value is a
    // multiple of 1/16, exact in every float type), integers through int64, booleans as booleans.
    private static void AssertValues(JsonObject expected, Tensor actual, string what)
    {
        JsonArray values = expected["values"]!.AsArray();
        Assert.AreEqual(values.Count, (int)actual.numel(), what);
        if (values.Count == 0) return;
        if (actual.dtype == ScalarType.Bool)
            CollectionAssert.AreEqual(values.Select(v => v!.GetValue<bool>()).ToArray(), actual.reshape(-1).data<bool>().ToArray(), what);
        else if (actual.is_floating_point())
        {
            using Tensor wide = actual.to(ScalarType.Float64).reshape(-1);
            CollectionAssert.AreEqual(values.Select(v => v!.GetValue<double>()).ToArray(), wide.data<double>().ToArray(), what);
        }
        else
        {
            using Tensor wide = actual.to(ScalarType.Int64).reshape(-1);
            CollectionAssert.AreEqual(values.Select(v => v!.GetValue<long>()).ToArray(), wide.data<long>().ToArray(), what);
        }
    }

    [TestMethod]
    [DataRow("rwkv6_bf16.pth")]
    [DataRow("rwkv6_f16.pth")]
    [DataRow("rwkv6_f32.pth")]
    [DataRow("views.pth")]
    [DataRow("protocol4.pth")]
    public void ReadsTorchSaveFixturesExactly(string file)
    {
        using var scope = NewDisposeScope();
        JsonArray expected = Manifest[file]!["tensors"]!.AsArray();
        using var pth = PthFile.Open(Fixture(file));
        Assert.AreEqual(Fixture(file), pth.FilePath);
        CollectionAssert.AreEqual(expected.Select(t => t!["name"]!.GetValue<string>()).ToArray(), pth.Entries.Select(e => e.Name).ToArray(), "key order");
        foreach (JsonObject t in expected.Select(t => t!.AsObject()))
        {
            string name = t["name"]!.GetValue<string>();
            PthEntry entry = pth[name];
            Assert.AreEqual(DTypeOf(t["dtype"]!.GetValue<string>()), entry.DType, name);
            CollectionAssert.AreEqual(Longs(t["shape"]), entry.Shape, name);
            CollectionAssert.AreEqual(Longs(t["stride"]), entry.Strides, name);
            Assert.AreEqual(t["offset"]!.GetValue<long>(), entry.StorageOffset, name);
            Tensor loaded = pth.Load(name);
            Assert.AreEqual(entry.DType, loaded.dtype, name);
            CollectionAssert.AreEqual(entry.Shape, loaded.shape, name);
            Assert.IsTrue(loaded.is_contiguous(), name);
            Assert.AreEqual(DeviceType.CPU, loaded.device_type, name);
            AssertValues(t, loaded, name);
        }
    }

    [TestMethod]
    public void RwkvFixtureHasBlinkDlKeysInOrder()
    {
        using var scope = NewDisposeScope();
        using var pth = PthFile.Open(Fixture("rwkv6_bf16.pth"));
        Assert.AreEqual(34, pth.Entries.Count);
        Assert.AreEqual("emb.weight", pth.Entries[0].Name);
        Assert.AreEqual("blocks.0.ln0.weight", pth.Entries[1].Name);
        Assert.AreEqual("head.weight", pth.Entries[^1].Name);
        Assert.IsTrue(pth.Entries.All(e => e.DType == ScalarType.BFloat16));
        Assert.IsTrue(pth.Contains("blocks.0.att.time_maa_w1"));
        Assert.IsFalse(pth.Contains("blocks.1.att.time_maa_w1"));
        CollectionAssert.AreEqual(new long[] { 4, 10 }, pth["blocks.0.att.time_maa_w1"].Shape);
        CollectionAssert.AreEqual(new long[] { 5, 2, 4 }, pth["blocks.0.att.time_maa_w2"].Shape);
        // values(shape, seed=0): element i is ((37 i) % 101 - 50) / 16.
        CollectionAssert.AreEqual(new[] { -50 / 16f, -13 / 16f, 24 / 16f }, pth.Load("emb.weight", ScalarType.Float32).reshape(-1).narrow(0, 0, 3).data<float>().ToArray());
    }

    [TestMethod]
    public void ViewsShareTheirStorage()
    {
        using var scope = NewDisposeScope();
        using var pth = PthFile.Open(Fixture("views.pth"));
        PthEntry head = pth["shared.head"], tail = pth["shared.tail"], column = pth["shared.column"];
        Assert.AreEqual(head.StorageKey, tail.StorageKey);
        Assert.AreEqual(head.StorageKey, column.StorageKey);
        Assert.AreEqual(4L, tail.StorageOffset);
        Assert.IsTrue(tail.IsContiguous);
        Assert.IsFalse(column.IsContiguous);
        Assert.IsFalse(pth["transposed"].IsContiguous);
        CollectionAssert.AreEqual(new long[] { 0, 1 }, pth["expanded"].Strides);
        // shared.tail is rows 2.. of the [5, 2] base and shared.column is base[1:, 1], so column[k + 1] is tail[k, 1].
        Tensor tailValues = pth.Load("shared.tail"), columnValues = pth.Load("shared.column");
        Assert.AreEqual(columnValues[1].item<float>(), tailValues[0, 1].item<float>());
        Assert.AreEqual(columnValues[3].item<float>(), tailValues[2, 1].item<float>());
        Assert.AreNotEqual(columnValues[1].item<float>(), columnValues[3].item<float>());
        Assert.AreEqual(0, pth.Load("scalar").ndim);
        Assert.AreEqual(3.5f, pth.Load("scalar").item<float>());
        CollectionAssert.AreEqual(new long[] { 0, 3 }, pth.Load("empty").shape);
    }

    [TestMethod]
    public void ReadIntoConvertsDtypeAndFillsStridedDestinations()
    {
        using var scope = NewDisposeScope();
        using var pth = PthFile.Open(Fixture("rwkv6_bf16.pth"));
        Tensor expected = pth.Load("emb.weight").to(ScalarType.Float32);

        Tensor f32 = full(8, 4, float.NaN);
        pth.ReadInto("emb.weight", f32);
        Assert.IsTrue(f32.eq(expected).all().item<bool>());

        // A transposed (non-contiguous) destination of the same shape.
        Tensor strided = full(4, 8, float.NaN).t();
        pth.ReadInto("emb.weight", strided);
        Assert.IsTrue(strided.eq(expected).all().item<bool>());

        Tensor same = zeros(8, 4, dtype: ScalarType.BFloat16);
        pth.ReadInto("emb.weight", same);
        Assert.IsTrue(same.eq(pth.Load("emb.weight")).all().item<bool>());

        var e = Assert.ThrowsExactly<ArgumentException>(() => pth.ReadInto("emb.weight", zeros(4, 8)));
        StringAssert.Contains(e.Message, pth.FilePath);
        StringAssert.Contains(e.Message, "[8, 4]");
    }

    [TestMethod]
    [DataRow("transposed", true)]
    [DataRow("transposed", false)]
    [DataRow("shared.tail", true)]
    [DataRow("i64", false)]
    public void FingerprintRecordsTheContiguousStoredBytes(string name, bool direct)
    {
        using var scope = NewDisposeScope();
        using var pth = PthFile.Open(Fixture("views.pth"));
        Tensor loaded = pth.Load(name);
        var viaRead = new WeightFingerprint();
        pth.ReadInto(name, direct ? empty(loaded.shape, dtype: loaded.dtype) : empty(loaded.shape, dtype: ScalarType.Float64), viaRead);
        var viaBytes = new WeightFingerprint();
        viaBytes.AddBytes("views.pth", name, loaded.bytes);
        Assert.AreEqual(viaBytes.Digests()["views.pth"], viaRead.Digests()["views.pth"]);

        var other = new WeightFingerprint();
        other.AddBytes("views.pth", name, pth.Load("shared.head").bytes);
        Assert.AreNotEqual(other.Digests()["views.pth"], viaRead.Digests()["views.pth"]);
    }

    [TestMethod]
    public void MissingNamesAndClosedFilesThrowClearly()
    {
        using var pth = PthFile.Open(Fixture("views.pth"));
        var missing = Assert.ThrowsExactly<KeyNotFoundException>(() => pth["nope"]);
        StringAssert.Contains(missing.Message, pth.FilePath);
        StringAssert.Contains(missing.Message, "'nope'");
        Assert.ThrowsExactly<KeyNotFoundException>(() => pth.Load("nope"));
        pth.Dispose();
        Assert.ThrowsExactly<ObjectDisposedException>(() => pth.Load("f16"));
        Assert.ThrowsExactly<FileNotFoundException>(() => PthFile.Open(Path.Combine(_dir, "absent.pth")));
    }

    // ---- Hand-written files: a valid baseline, then one thing broken at a time. ----

    private static readonly TensorSpec[] BaselineTensors =
    [
        new("w", "FloatStorage", "0", 6, 0, [2, 3], [3, 1]),
        new("w.t", "FloatStorage", "0", 6, 0, [3, 2], [1, 3]),
        new("tail", "FloatStorage", "0", 6, 4, [2], [1], Long1: true),
        new("b", "BFloat16Storage", "1", 3, 0, [3], [1]),
    ];

    // bf16 1.0, 2.0 and -0.5 are 0x3F80, 0x4000 and 0xBF00.
    private static readonly (string, byte[])[] BaselineStorages = [("0", F32(1, 2, 3, 4, 5, 6)), ("1", [0x80, 0x3F, 0x00, 0x40, 0x00, 0xBF])];

    private static Archive Baseline(bool zip64 = false, bool ordered = true, string? byteOrder = "little", Func<Member, Member>? alter = null) =>
        Checkpoint(StateDict(BaselineTensors, ordered), BaselineStorages, byteOrder, zip64, alter);

    private string Write(byte[] bytes, string name = "hand.pth")
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [TestMethod]
    [DataRow(false, true, "little")]
    [DataRow(true, true, "little")]
    [DataRow(false, false, null)]
    public void ReadsHandWrittenCheckpoints(bool zip64, bool ordered, string? byteOrder)
    {
        using var scope = NewDisposeScope();
        using var pth = PthFile.Open(Write(Baseline(zip64, ordered, byteOrder).Bytes));
        CollectionAssert.AreEqual(new[] { "w", "w.t", "tail", "b" }, pth.Entries.Select(e => e.Name).ToArray());
        CollectionAssert.AreEqual(new[] { 1f, 2f, 3f, 4f, 5f, 6f }, pth.Load("w").reshape(-1).data<float>().ToArray());
        CollectionAssert.AreEqual(new[] { 1f, 4f, 2f, 5f, 3f, 6f }, pth.Load("w.t").reshape(-1).data<float>().ToArray());
        CollectionAssert.AreEqual(new[] { 5f, 6f }, pth.Load("tail").data<float>().ToArray());
        Assert.AreEqual(ScalarType.BFloat16, pth["b"].DType);
        CollectionAssert.AreEqual(new[] { 1f, 2f, -0.5f }, pth.Load("b", ScalarType.Float32).data<float>().ToArray());
    }

    [TestMethod]
    public void ReadsProtocolFourOpcodesAndParameters()
    {
        // SHORT_BINUNICODE, MEMOIZE and STACK_GLOBAL, and a tensor wrapped by _rebuild_parameter.
        var p = new Pickle().Proto(4).Op(EMPTY_DICT, MEMOIZE).ShortStr("p")
            .ShortStr("torch._utils").ShortStr("_rebuild_parameter").Op(STACK_GLOBAL, MEMOIZE)
            .ShortStr("torch._utils").ShortStr("_rebuild_tensor_v2").Op(STACK_GLOBAL)
            .Op(MARK).Op(MARK).ShortStr("storage").ShortStr("torch").ShortStr("FloatStorage").Op(STACK_GLOBAL).ShortStr("0").ShortStr("cpu").Int(2).Op(TUPLE, BINPERSID)
            .Int(0).Int(2).Op(TUPLE1).Int(1).Op(TUPLE1).Op(NEWFALSE).ShortStr("collections").ShortStr("OrderedDict").Op(STACK_GLOBAL, MEMOIZE).Op(EMPTY_TUPLE, REDUCE).Op(TUPLE, REDUCE)
            .Op(NEWTRUE, BINGET, 2, EMPTY_TUPLE, REDUCE, TUPLE3, REDUCE, SETITEM, STOP);
        using var scope = NewDisposeScope();
        using var pth = PthFile.Open(Write(Checkpoint(p.ToArray(), [("0", F32(7, 8))]).Bytes));
        CollectionAssert.AreEqual(new[] { 7f, 8f }, pth.Load("p").data<float>().ToArray());
    }

    private void AssertRejected(byte[] bytes, string expected)
    {
        string path = Write(bytes, "bad.pth");
        var e = Assert.ThrowsExactly<PthFormatException>(() => PthFile.Open(path).Dispose());
        StringAssert.StartsWith(e.Message, path + ": ");
        StringAssert.Contains(e.Message, expected);
        Assert.AreEqual(path, e.FilePath);
    }

    private void AssertPickleRejected(Pickle pickle, string expected) =>
        AssertRejected(Checkpoint(pickle.ToArray(), BaselineStorages).Bytes, expected);

    [TestMethod]
    [DataRow("os", "system")]
    [DataRow("posix", "system")]
    [DataRow("nt", "system")]
    [DataRow("builtins", "eval")]
    [DataRow("builtins", "exec")]
    [DataRow("subprocess", "Popen")]
    [DataRow("torch._utils", "_rebuild_parameter_with_state")]
    [DataRow("torch", "load")]
    [DataRow("collections", "deque")]
    public void RefusesCallsToOtherGlobals(string module, string name) =>
        AssertPickleRejected(new Pickle().Proto(2).Global(module, name).Str("echo owned").Op(TUPLE1, REDUCE, STOP), $"global '{module}.{name}' is not allowed");

    [TestMethod]
    public void RefusesOtherGlobalsThroughStackGlobal() =>
        AssertPickleRejected(new Pickle().Proto(4).ShortStr("os").ShortStr("system").Op(STACK_GLOBAL).ShortStr("id").Op(TUPLE1, REDUCE, STOP), "global 'os.system' is not allowed");

    [TestMethod]
    public void RefusesAGlobalEvenAsAStateDictValue() =>
        AssertPickleRejected(new Pickle().Proto(2).Op(EMPTY_DICT).Str("x").Global("builtins", "eval").Op(SETITEM, STOP), "global 'builtins.eval' is not allowed");

    [TestMethod]
    [DataRow((byte)'i', "INST")]
    [DataRow((byte)'o', "OBJ")]
    [DataRow((byte)0x81, "NEWOBJ")]
    [DataRow((byte)0x92, "NEWOBJ_EX")]
    [DataRow((byte)'P', "PERSID")]
    [DataRow((byte)0x82, "EXT1")]
    [DataRow((byte)'S', "STRING")]
    [DataRow((byte)'B', "BINBYTES")]
    [DataRow((byte)'2', "DUP")]
    [DataRow((byte)0x8f, "EMPTY_SET")]
    [DataRow((byte)'d', "DICT")]
    public void RefusesOpcodesOutsideTheAllowList(byte opcode, string opcodeName) =>
        AssertPickleRejected(new Pickle().Proto(2).Op(MARK).Op(opcode).Op(Encoding.ASCII.GetBytes("os\nsystem\n")).Op(STOP), $"opcode {opcodeName} (0x{opcode:x2}) is not allowed");

    [TestMethod]
    public void RefusesBytesThatAreNoOpcode() =>
        AssertPickleRejected(new Pickle().Proto(2).Op(0xFF, STOP), "byte 0xff is not a pickle opcode");

    [TestMethod]
    public void RefusesBuildOnAPlainDict() =>
        AssertPickleRejected(new Pickle().Proto(2).Op(EMPTY_DICT, EMPTY_DICT, BUILD, STOP), "only an OrderedDict may be given attributes");

    [TestMethod]
    public void RefusesATopLevelThatIsNotADict()
    {
        AssertPickleRejected(new Pickle().Proto(2).Op(EMPTY_LIST, STOP), "data.pkl holds a list of 0, not a dict of tensors");
        AssertPickleRejected(new Pickle().Proto(2).Str("weights").Op(STOP), "data.pkl holds the string 'weights', not a dict of tensors");
    }

    [TestMethod]
    public void RefusesNonTensorValuesAndNonStringKeys()
    {
        AssertPickleRejected(new Pickle().Proto(2).Op(EMPTY_DICT).Str("epoch").Int(3).Op(SETITEM, STOP), "state dict entry 'epoch' is the integer 3, not a tensor");
        AssertPickleRejected(new Pickle().Proto(2).Op(EMPTY_DICT).Int(1).Str("x").Op(SETITEM, STOP), "the integer 1 as a key");
        AssertPickleRejected(new Pickle().Proto(2).Op(EMPTY_DICT, EMPTY_TUPLE).Str("x").Op(SETITEM, STOP), "a dict key is a tuple of 0");
    }

    [TestMethod]
    public void RefusesBrokenPickles()
    {
        byte[] valid = StateDict(BaselineTensors);
        AssertPickleRejected(new Pickle().Op(valid[..^1]), "ends without a STOP opcode");
        AssertPickleRejected(new Pickle().Op(valid).Op(NONE), "1 bytes follow the STOP opcode");
        AssertPickleRejected(new Pickle().Proto(2).Op((byte)'X').UInt32(0x7FFFFFF0).Op(STOP), "a string of 2147483632 bytes runs past the end of the pickle");
        AssertPickleRejected(new Pickle().Proto(2).Op(BINGET, 9, STOP), "memo index 9 was never stored");
        AssertPickleRejected(new Pickle().Proto(2).Op(SETITEM, STOP), "the stack is empty");
        AssertPickleRejected(new Pickle().Proto(2).Op(EMPTY_DICT, MARK, STOP), "STOP with a MARK still open");
        AssertPickleRejected(new Pickle().Proto(2).Op(EMPTY_DICT, EMPTY_DICT, STOP), "STOP with 2 values on the stack");
        AssertPickleRejected(new Pickle().Proto(2).Op(EMPTY_DICT).Op((byte)'X').UInt32(2).Op(0xC3, 0x28).Op(STOP), "not valid UTF-8");
        AssertPickleRejected(new Pickle().Proto(6).Op(EMPTY_DICT, STOP), "pickle protocol 6 is not read");
        AssertPickleRejected(new Pickle().Proto(2).Int(5).Op(EMPTY_TUPLE, APPEND, STOP), "APPEND to the integer 5, not a list");
    }

    private static Pickle OneTensor(string storageType, long numel, long offset, long[] size, long[] stride, string key = "0") =>
        new Pickle().Op(StateDict([new("x", storageType, key, numel, offset, size, stride, Long1: numel > int.MaxValue)]));

    [TestMethod]
    public void RefusesAStorageLargerThanItsMemberBeforeAllocating() =>
        // 2^40 float32 elements would be 4 TiB; the member holds 24 bytes.
        AssertPickleRejected(OneTensor("FloatStorage", 1L << 40, 0, [1L << 40], [1]), "storage '0' declares 1099511627776 elements of Float32 (4 bytes each) but member 'archive/data/0' holds only 24 bytes");

    [TestMethod]
    public void RefusesAStorageOneElementLargerThanItsMember() =>
        AssertPickleRejected(OneTensor("FloatStorage", 7, 0, [7], [1]), "storage '0' declares 7 elements");

    [TestMethod]
    public void RefusesTensorsReachingPastTheirStorage()
    {
        AssertPickleRejected(OneTensor("FloatStorage", 6, 4, [3], [1]), "reaches element 6, past the end of storage '0' of 6 elements");
        AssertPickleRejected(OneTensor("FloatStorage", 6, 0, [2, 3], [4, 1]), "reaches element 6, past the end of storage '0'");
        AssertPickleRejected(OneTensor("FloatStorage", 6, 7, [0], [1]), "reaches element 7, past the end of storage '0'");
        AssertPickleRejected(OneTensor("FloatStorage", 6, 0, [2, 1L << 62], [1L << 62, 1]), "overflows");
    }

    [TestMethod]
    public void RefusesNegativeLayouts()
    {
        AssertPickleRejected(OneTensor("FloatStorage", 6, 5, [3], [-1]), "tensor 'x' has a negative stride");
        AssertPickleRejected(OneTensor("FloatStorage", 6, 0, [-2], [1]), "tensor 'x' has a negative size");
        AssertPickleRejected(OneTensor("FloatStorage", 6, -1, [1], [1]), "tensor 'x' has a negative storage offset");
        AssertPickleRejected(OneTensor("FloatStorage", 6, 0, [2, 3], [3]), "tensor 'x' has 2 sizes but 1 strides");
    }

    [TestMethod]
    public void RefusesAPersistentIdNamingAMissingStorage() =>
        AssertPickleRejected(OneTensor("FloatStorage", 6, 0, [6], [1], key: "7"), "tensor 'x' uses storage '7' but the archive has no member 'archive/data/7'");

    [TestMethod]
    public void RefusesOneStorageDeclaredTwoWays()
    {
        TensorSpec[] tensors = [new("a", "FloatStorage", "0", 6, 0, [6], [1]), new("b", "IntStorage", "0", 6, 0, [6], [1])];
        AssertPickleRejected(new Pickle().Op(StateDict(tensors)), "storage '0' is declared as 6 × Float32 and again as 6 × Int32");
    }

    [TestMethod]
    public void RefusesUnknownStorageTypes() =>
        AssertPickleRejected(OneTensor("ComplexFloatStorage", 3, 0, [3], [1]), "global 'torch.ComplexFloatStorage' is not allowed");

    [TestMethod]
    public void RefusesCompressedMembers()
    {
        AssertRejected(Baseline(alter: m => m.Name == "archive/data/0" ? m with { Method = 8 } : m).Bytes, "member 'archive/data/0' is compressed (deflate, method 8)");
        AssertRejected(Baseline(alter: m => m.Name == "archive/data.pkl" ? m with { Method = 8 } : m).Bytes, "member 'archive/data.pkl' is compressed");
    }

    [TestMethod]
    public void RefusesACompressedLocalHeaderBehindAStoredCentralEntry()
    {
        Archive a = Baseline();
        byte[] bytes = a.Bytes.ToArray();
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan((int)a.LocalHeaders["archive/data/1"] + 8), 8);
        AssertRejected(bytes, "member 'archive/data/1' is compressed (deflate, method 8) in its local header");
    }

    [TestMethod]
    public void RefusesEncryptedMembers() =>
        AssertRejected(Baseline(alter: m => m.Name == "archive/data/1" ? m with { Flags = 1 } : m).Bytes, "member 'archive/data/1' is encrypted");

    [TestMethod]
    public void RefusesTruncatedFiles()
    {
        byte[] whole = Baseline().Bytes;
        AssertRejected(whole[..(whole.Length / 2)], "no ZIP end-of-central-directory record");
        AssertRejected(whole[..^1], "no ZIP end-of-central-directory record");
        AssertRejected(whole[..10], "too short to be a ZIP archive");
    }

    [TestMethod]
    public void RefusesACentralDirectoryPastTheEnd()
    {
        Archive a = Baseline();
        byte[] bytes = a.Bytes.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan((int)a.EndOffset + 16), (uint)bytes.Length + 100);
        AssertRejected(bytes, $"the central directory (offset {bytes.Length + 100}");

        bytes = a.Bytes.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan((int)a.EndOffset + 12), 0x7FFFFFFF);
        AssertRejected(bytes, "goes past its end record");
    }

    [TestMethod]
    public void RefusesMembersPastTheCentralDirectory()
    {
        Archive a = Baseline();
        byte[] bytes = a.Bytes.ToArray();
        int header = (int)a.CentralHeaders["archive/data/0"];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(header + 20), 0x7FFFFFF0);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(header + 24), 0x7FFFFFF0);
        AssertRejected(bytes, "member 'archive/data/0' (2147483632 bytes at offset");

        bytes = a.Bytes.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan((int)a.CentralHeaders["archive/data/1"] + 42), (uint)a.CentralStart + 1);
        AssertRejected(bytes, "member 'archive/data/1' has its local header at offset");

        bytes = a.Bytes.ToArray();
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan((int)a.CentralHeaders["archive/data/1"] + 42), (uint)a.LocalHeaders["archive/data/0"] + 1);
        AssertRejected(bytes, "member 'archive/data/1' has no local header signature");
    }

    [TestMethod]
    public void RefusesBrokenZip64Records()
    {
        Archive a = Baseline(zip64: true);
        byte[] bytes = a.Bytes.ToArray();
        // The locator's pointer to the zip64 end record, moved past the end of the file.
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan((int)a.EndOffset - 20 + 8), (ulong)bytes.Length * 2);
        AssertRejected(bytes, "the zip64 end record offset");

        bytes = a.Bytes.ToArray();
        // The zip64 central directory offset (in the zip64 end record, 56 + 20 bytes before the end record).
        BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan((int)a.EndOffset - 20 - 56 + 48), 1UL << 40);
        AssertRejected(bytes, "the central directory (offset 1099511627776");

        bytes = a.Bytes.ToArray();
        // Drop the zip64 extra field of the first member by renaming its tag.
        int header = (int)a.CentralHeaders["archive/data.pkl"];
        int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(header + 28));
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(header + 46 + nameLength), 0x9999);
        AssertRejected(bytes, "member 'archive/data.pkl' has zip64 placeholder values but no zip64 extra field");
    }

    [TestMethod]
    public void RefusesACorruptPickleByItsCrc()
    {
        Archive a = Baseline();
        byte[] bytes = a.Bytes.ToArray();
        int at = (int)a.CentralHeaders["archive/data.pkl"] + 16;
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(at), BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at)) ^ 1);
        AssertRejected(bytes, "member 'archive/data.pkl' fails its CRC-32 check");
    }

    [TestMethod]
    public void RefusesBigEndianAndUnknownByteOrders()
    {
        AssertRejected(Baseline(byteOrder: "big").Bytes, "big-endian");
        AssertRejected(Baseline(byteOrder: "middle").Bytes, "says 'middle', neither 'little' nor 'big'");
    }

    [TestMethod]
    public void RefusesArchivesThatAreNoCheckpoint()
    {
        AssertRejected(Zip([new("archive/version", "3\n"u8.ToArray())]).Bytes, "no <archive>/data.pkl member");
        AssertRejected(Zip([new("data.pkl", StateDict([]))]).Bytes, "not inside an archive folder");
        AssertRejected(Zip([new("a/data.pkl", StateDict([])), new("b/data.pkl", StateDict([]))]).Bytes, "2 data.pkl members");
        AssertRejected(Zip([new("a/data.pkl", StateDict([])), new("a/data.pkl", StateDict([]))]).Bytes, "two members named 'a/data.pkl'");
        AssertRejected(Baseline(alter: m => m.Name == "archive/version" ? m with { Data = "three"u8.ToArray() } : m).Bytes, "holds 'three', not a format version number");
    }

    [TestMethod]
    public void RefusesTheLegacyFormat() =>
        // Before PyTorch 1.6, torch.save wrote pickles back to back, starting with a pickled magic number.
        AssertRejected([0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e, .. new byte[32]], "legacy (before PyTorch 1.6) torch.save format");

    [TestMethod]
    public void DamagedBytesRaiseOnlyFormatErrors()
    {
        // Every single-byte change and every truncation of a valid checkpoint either still reads or is refused with
        // PthFormatException; no other exception escapes (an index or overflow error would mean an unchecked value).
        byte[] valid = Baseline().Bytes;
        string path = Path.Combine(_dir, "damaged.pth");
        int refused = 0, read = 0;
        using var scope = NewDisposeScope();
        for (int at = 0; at < valid.Length; at++)
        {
            foreach (byte change in new byte[] { 0xFF, 0x01, 0x80 })
            {
                byte[] bytes = valid.ToArray();
                bytes[at] ^= change;
                File.WriteAllBytes(path, bytes);
                try
                {
                    using var pth = PthFile.Open(path);
                    foreach (PthEntry e in pth.Entries) pth.Load(e.Name).Dispose();
                    read++;
                }
                catch (PthFormatException e) when (e.FilePath == path) { refused++; }
            }
        }
        for (int length = 0; length < valid.Length; length += 7)
        {
            File.WriteAllBytes(path, valid[..length]);
            Assert.ThrowsExactly<PthFormatException>(() => PthFile.Open(path).Dispose(), $"truncated to {length} bytes");
        }
        // Storage bytes and padding may change freely; headers and the pickle may not.
        Assert.IsTrue(refused > 0 && read > 0, $"{refused} refused, {read} read");
    }

    [TestMethod]
    public void AcceptsAnEmptyStateDict()
    {
        using var pth = PthFile.Open(Write(Checkpoint(StateDict([]), []).Bytes));
        Assert.AreEqual(0, pth.Entries.Count);
    }
}
