using Microsoft.ML.Bone.Models.Rwkv6;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.Models;

/// <summary>The real trained tiny RWKV-6 from rwkv.cpp's test suite, against rwkv.cpp's own outputs and an independent pass.</summary>
[TestClass]
public sealed class Rwkv6Tests
{
    private static string Tiny(params string[] parts) => SharedData.Path(["models", "tiny-rwkv-6v0-1m", .. parts]);

    private static readonly Lazy<Rwkv6Reference> Reference = new(() => Rwkv6Reference.FromHfSafetensors(Tiny("hf", "model.safetensors")));

    // "Once upon a time, there was a little girl named Lily." in UTF-16LE: 106 byte tokens, the tiny model's training encoding.
    private static long[] Text() => System.Text.Encoding.Unicode.GetBytes("Once upon a time, there was a little girl named Lily.").Select(b => (long)b).ToArray();

    private static float[] ExpectedLogits()
    {
        byte[] bytes = File.ReadAllBytes(Tiny("expected-logits-6v0-1m.bin"));
        var logits = new float[256];
        Buffer.BlockCopy(bytes, 0, logits, 0, 1024);
        return logits;
    }

    public static IEnumerable<object[]> Formats => [["hf"], ["rwkv.cpp"], ["rwkv.cpp FP16"], ["BlinkDL .pth"]];

    private static string TinyPth => Path.Combine(AppContext.BaseDirectory, "Models", "Rwkv6Fixtures", "tiny-rwkv-6v0-1m-bf16.pth");

    private static readonly Lazy<string> Fp16File = new(() => WriteFp16Copy(Tiny("tiny-rwkv-6v0-1m-FP32.bin")));

    [ClassCleanup]
    public static void DeleteFp16Copy()
    {
        if (Fp16File.IsValueCreated) File.Delete(Fp16File.Value);
    }

    private static Rwkv6ForCausalLM Load(string format) => format switch
    {
        "hf" => Rwkv6Checkpoint.Load(Tiny("hf")),
        "rwkv.cpp FP16" => Rwkv6Checkpoint.Load(Fp16File.Value),
        "BlinkDL .pth" => Rwkv6Checkpoint.Load(TinyPth),
        _ => Rwkv6Checkpoint.Load(Tiny("tiny-rwkv-6v0-1m-FP32.bin")),
    };

    // rwkv.cpp's FP16 layout, written from the FP32 file by the format's description (header data_type 1, every
    // record's data_type 1 and its data as IEEE half), as rwkv.cpp's converter does with --float-type FP16.
    private static string WriteFp16Copy(string fp32)
    {
        byte[] input = File.ReadAllBytes(fp32);
        string path = Path.Combine(Path.GetTempPath(), $"tiny-rwkv-6v0-1m-FP16-{Environment.ProcessId}.bin");
        using var output = new BinaryWriter(File.Create(path));
        output.Write(input, 0, 20);
        output.Write(1);
        int at = 24;
        while (at < input.Length)
        {
            int dims = BitConverter.ToInt32(input, at), nameLength = BitConverter.ToInt32(input, at + 4);
            long count = 1;
            for (int d = 0; d < dims; d++) count *= BitConverter.ToInt32(input, at + 12 + 4 * d);
            output.Write(dims);
            output.Write(nameLength);
            output.Write(1);
            output.Write(input, at + 12, 4 * dims + nameLength);
            at += 12 + 4 * dims + nameLength;
            for (long i = 0; i < count; i++, at += 4) output.Write((Half)BitConverter.ToSingle(input, at));
        }
        return path;
    }

    [TestMethod]
    [DynamicData(nameof(Formats))]
    public void ReproducesRwkvCppsReferenceLogits(string format)
    {
        using var scope = NewDisposeScope();
        using var model = Load(format);
        Assert.AreEqual(12, model.Config.NumHiddenLayers);
        Assert.AreEqual(8, model.Config.NumHeads);
        Assert.AreEqual(224, model.Config.IntermediateSize);
        using var noGrad = no_grad();
        // rwkv.cpp's test feeds "in (34, 105, 110) one token at a time from the zero state.
        using var state = model.NewState();
        Tensor logits = null!;
        foreach (long id in new long[] { 34, 105, 110 }) logits = model.Forward(tensor(new[] { id }).unsqueeze(0), state);
        float[] got = logits.reshape(-1).data<float>().ToArray();
        float[] expected = ExpectedLogits();
        double sumDiff = got.Zip(expected, (a, b) => (double)a - b).Sum();
        Assert.IsLessThanOrEqualTo(0.00105, Math.Abs(sumDiff), "rwkv.cpp's own criterion: |Σ(logits − expected)| ≤ 0.00105");
        for (int i = 0; i < 256; i++) Assert.AreEqual(expected[i], got[i], 2e-4 + 1e-3 * Math.Abs(expected[i]), $"logit {i}");
        if (format.EndsWith("FP16", StringComparison.Ordinal)) Assert.AreEqual(ScalarType.Float32, model.head.weight.dtype, "FP16 files load into the requested float32");
        Assert.AreEqual(3, state.Length);
    }

    [TestMethod]
    [DynamicData(nameof(Formats))]
    public void EveryPositionMatchesAnIndependentFloat64PassThroughBothWkvForms(string format)
    {
        using var scope = NewDisposeScope();
        using var model = Load(format);
        long[] ids = Text();
        Assert.IsGreaterThanOrEqualTo(48, ids.Length);
        Tensor expected = Reference.Value.Sequence(ids);                                       // [T, V] float64
        using var noGrad = no_grad();
        foreach (WkvImplementation wkv in new[] { WkvImplementation.Chunked, WkvImplementation.Recurrent })
        {
            model.Wkv = wkv;
            Tensor got = model.Forward(tensor(ids).unsqueeze(0)).squeeze(0);
            AssertClose(expected, got, 2e-4 * Math.Max(1, expected.abs().max().item<double>()), $"{format}, {wkv}, all {ids.Length} positions");
        }
    }

    [TestMethod]
    public void StreamingInChunksWithTheStateEqualsOnePass()
    {
        using var scope = NewDisposeScope();
        using var model = Load("hf");
        long[] ids = Text();
        using var noGrad = no_grad();
        Tensor whole = model.Forward(tensor(ids).unsqueeze(0)).squeeze(0);
        using var state = model.NewState();
        var pieces = new List<Tensor>();
        foreach (var (start, length) in new[] { (0, 1), (1, 17), (18, 40), (58, ids.Length - 58) })
            pieces.Add(model.Forward(tensor(ids[start..(start + length)]).unsqueeze(0), state).squeeze(0));
        AssertClose(whole, cat(pieces, 0), 1e-4, "chunked stream vs one pass");
        Assert.AreEqual(ids.Length, state.Length);

        // A kept state resumes: clone after the prompt, continue twice.
        using var prompt = model.NewState();
        model.Forward(tensor(ids[..30]).unsqueeze(0), prompt);
        using var branch = prompt.Clone();
        Tensor a = model.Forward(tensor(ids[30..40]).unsqueeze(0), prompt), b = model.Forward(tensor(ids[30..40]).unsqueeze(0), branch);
        AssertClose(a, b, 0, "a cloned state continues identically");
        AssertClose(whole.narrow(0, 30, 10), a.squeeze(0), 1e-4, "resumed state = one pass");

        // rwkv.cpp's flat layout round trip: (2 + N)·C floats per layer.
        float[] flat = prompt.ToFlat(model.Config);
        Assert.HasCount(12 * 640, flat);
        using var restored = Rwkv6State.FromFlat(model.Config, flat);
        AssertClose(model.Forward(tensor(ids[40..45]).unsqueeze(0), prompt), model.Forward(tensor(ids[40..45]).unsqueeze(0), restored), 1e-6, "flat state round trip");
    }

    [TestMethod]
    public void ThePthIsPickedByTheRegistryAndKeepsBf16WhenAsked()
    {
        using var scope = NewDisposeScope();
        Assert.AreEqual(Rwkv6Checkpoint.PthKind, ModelRegistry.ArchitectureOf(TinyPth));
        Assert.AreEqual(Rwkv6Checkpoint.RwkvCppKind, ModelRegistry.ArchitectureOf(Tiny("tiny-rwkv-6v0-1m-FP32.bin")));
        Assert.AreEqual(Rwkv6Config.ModelType, ModelRegistry.ArchitectureOf(Tiny("hf")));
        using var bf16 = (Rwkv6ForCausalLM)ModelRegistry.LoadCausalLM(TinyPth, new ModelLoadOptions { DType = null });
        Assert.AreEqual(ScalarType.BFloat16, bf16.head.weight.dtype, "a bf16 .pth stays bf16");
        using var f32 = Load("hf");
        using var noGrad = no_grad();
        Tensor ids = tensor(Text()[..24]).unsqueeze(0);
        // bf16 compute rounds every activation: close to float32, not equal.
        AssertClose(f32.Forward(ids), bf16.Forward(ids).to(ScalarType.Float32), 0.5, "bf16 model");
    }

    [TestMethod]
    public void ExportsToPthAndHuggingFaceLayoutRoundTrip()
    {
        using var scope = NewDisposeScope();
        using var model = Load("rwkv.cpp");
        string dir = Directory.CreateTempSubdirectory("bone-rwkv-export-").FullName;
        try
        {
            string pth = Path.Combine(dir, "model.pth"), hf = Path.Combine(dir, "hf");
            Rwkv6Checkpoint.SavePth(model, pth, ScalarType.BFloat16);
            model.SaveConfigAndWeights(hf);
            using (var file = PthFile.Open(pth))
            {
                Assert.AreEqual("emb.weight", file.Entries[0].Name);
                Assert.AreEqual(ScalarType.BFloat16, file["blocks.3.att.time_maa_w1"].DType);
                CollectionAssert.AreEqual(new long[] { 1, 1, 64 }, file["blocks.0.att.time_maa_x"].Shape);
            }
            Tensor ids = tensor(Text()[..30]).unsqueeze(0);
            using var noGrad = no_grad();
            Tensor expected = model.Forward(ids);
            using var fromPth = Rwkv6Checkpoint.Load(pth);
            using var fromHf = Rwkv6Checkpoint.Load(hf);
            AssertClose(expected, fromPth.Forward(ids), 1e-5, "exported .pth (bf16 is exact for this model)");
            AssertClose(expected, fromHf.Forward(ids), 0, "exported Hugging Face layout");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [TestMethod]
    public void LeftPaddedRowsComputeWhatTheyWouldAlone()
    {
        using var scope = NewDisposeScope();
        using var model = Load("hf");
        long[] ids = Text()[..20];
        using var noGrad = no_grad();
        Tensor alone = model.Forward(tensor(ids).unsqueeze(0)).squeeze(0);
        var padded = new long[26];
        Array.Copy(ids, 0, padded, 6, 20);
        var mask = Enumerable.Range(0, 26).Select(i => i < 6 ? 0L : 1L).ToArray();
        Tensor batch = model.Forward(stack([tensor(padded), tensor(padded)]), stack([tensor(mask), tensor(mask)]));
        AssertClose(alone, batch[0].narrow(0, 6, 20), 1e-4, "left-padded row");
    }

    [TestMethod]
    public void GreedyGenerationReproducesTheGoldenSequences()
    {
        using var scope = NewDisposeScope();
        using var model = Load("rwkv.cpp");
        int[] first = [0, 111, 0, 116, 0, 104, 0, 101, 0, 114, 0, 32, 0, 116, 0, 104, 0, 101, 0, 32, 0, 99, 0, 111, 0, 109, 0, 112, 0, 97, 0, 110, 0, 121, 0, 32, 0, 111, 0, 102, 0, 32, 0, 116, 0, 104, 0, 101];
        CollectionAssert.AreEqual(first, Greedy(model, [34, 105, 110], first.Length), "after \"in");
        int[] once = System.Text.Encoding.Unicode.GetBytes("Once upon a time,").Select(b => (int)b).ToArray();
        Assert.HasCount(34, once);
        int[] continuation = Greedy(model, once, 48);
        Assert.AreEqual(" and the company of the ", System.Text.Encoding.Unicode.GetString(continuation.Select(i => (byte)i).ToArray()));
    }

    private static int[] Greedy(Rwkv6ForCausalLM model, int[] prompt, int count)
    {
        var options = new Tasks.GenerationOptions { MaxNewTokens = count, Temperature = 0 };
        // No end-of-sequence: the byte model emits 0 between characters.
        return Tasks.TextGeneration.Generate(model, [prompt], options, new HashSet<int>(), padId: 0)[0].ToArray();
    }

    [TestMethod]
    public void ChunkedWkvEqualsTheRecurrenceWithStrongDecaysAndAStartingState()
    {
        using var scope = NewDisposeScope();
        var generator = new TorchSharp.torch.Generator(3);
        long b = 2, t = 37, h = 3, n = 4;
        Tensor r = randn([b, t, h, n], generator: generator), k = randn([b, t, h, n], generator: generator), v = randn([b, t, h, n], generator: generator);
        // log w from −exp(w_raw) with w_raw up to +4: decays of e^-54 per token, far past what a factorised form survives.
        Tensor logW = -(randn([b, t, h, n], generator: generator) * 2 + 1).clamp_max(4).exp();
        Tensor u = randn([h, n], generator: generator), s0 = randn([b, h, n, n], generator: generator);
        var (y1, s1) = Wkv6.Recurrent(r, k, v, logW, u, s0);
        foreach (int chunk in new[] { 1, 5, 16, 64 })
        {
            var (y2, s2) = Wkv6.Chunked(r, k, v, logW, u, s0, chunk);
            AssertClose(y1, y2, 3e-5 * y1.abs().max().item<float>(), $"outputs, chunk {chunk}");
            AssertClose(s1, s2, 3e-5 * s1.abs().max().item<float>(), $"state, chunk {chunk}");
            Assert.IsFalse(y2.isnan().any().item<bool>());
        }
    }
}
