using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Microsoft.ML.Bone.Persistence;
using Microsoft.ML.Bone.Tests.CausalLM;
using Microsoft.ML.Bone.Tests.TextClassification;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.Persistence;

/// <summary>
/// Model zips of one base loaded in one process share a single copy of it, each zip's adapter attached under its own
/// name: a service holds one base and many task adapters.
/// </summary>
[TestClass]
public sealed class SharedBaseTests
{
    private static string _dir = "";
    private static string _roberta = "";
    private static string _llama = "";
    private static readonly Dictionary<string, string> Zips = [];
    private static readonly Dictionary<string, float[]> FittedScores = [];

    private sealed class Row
    {
        public string Sentence1 { get; set; } = "";
        public string Label { get; set; } = "";
    }

    private sealed class ScoreRow
    {
        public float[] Score { get; set; } = [];
    }

    private static List<Row> Rows(int labels) => Enumerable.Range(0, 24).Select(i => new Row
    {
        Sentence1 = i % 3 == 0 ? $"a wonderful, moving film number {i}" : $"a dull and tedious mess number {i}",
        Label = (i % labels).ToString(System.Globalization.CultureInfo.InvariantCulture),
    }).ToList();

    private static float[] Scores(MLContext ml, ITransformer model) =>
        ml.Data.CreateEnumerable<ScoreRow>(model.Transform(ml.Data.LoadFromEnumerable(Rows(3))), false).SelectMany(r => r.Score).ToArray();

    // Three task adapters of different methods on one 3-label base, and one on a 2-label base (another head).
    [ClassInitialize]
    public static void TrainTasks(TestContext _)
    {
        _dir = Directory.CreateTempSubdirectory("bone-shared-").FullName;
        _roberta = GlueData.TinyModel(Path.Combine(_dir, "roberta"), hidden: 16);
        _llama = Gsm8kPipelineTests.TinyLlama2(Path.Combine(_dir, "llama"));
        var ml = new MLContext(seed: 1);
        foreach (var (name, adapter, labels) in new[] { ("bone", AdapterKind.Bone, 3), ("lora", AdapterKind.Lora, 3), ("bat", AdapterKind.Bat, 3), ("two-labels", AdapterKind.Bone, 2) })
        {
            IDataView data = ml.Data.LoadFromEnumerable(Rows(labels));
            var options = new BoneTextClassificationOptions { ModelPath = _roberta, Adapter = adapter, Rank = 4, MaxEpochs = 1, BatchSize = 8, MaxSequenceLength = 32, LearningRate = 1e-2 };
            var fitted = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Fit(data);
            Zips[name] = Path.Combine(_dir, name + ".zip");
            ml.Model.Save(fitted, data.Schema, Zips[name]);
            if (labels == 3) FittedScores[name] = Scores(ml, fitted);
            ((IDisposable)fitted).Dispose();
        }
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_dir, recursive: true);

    private static BoneTextClassificationTransformer Bone(ITransformer t) => ((IEnumerable<ITransformer>)t).OfType<BoneTextClassificationTransformer>().Single();

    private static unsafe nint Address(Tensor t)
    {
        using Tensor first = t.reshape(-1).narrow(0, 0, 1);
        return (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(first.bytes));
    }

    /// <summary>Bytes of tensor memory the models hold, each storage counted once however many models reference it.</summary>
    private static long DistinctBytes(IEnumerable<Tensor> tensors)
    {
        var seen = new Dictionary<nint, long>();
        foreach (Tensor t in tensors.Where(t => t.numel() > 0))
        {
            long bytes = t.numel() * t.element_size();
            nint address = Address(t);
            seen[address] = Math.Max(bytes, seen.GetValueOrDefault(address));
        }
        return seen.Values.Sum();
    }

    private static IEnumerable<Tensor> TensorsOf(BoneTextClassificationTransformer t) => t.Model.Trained.Use((m, a) =>
        m.Module.state_dict().Values.Concat(a?.PeftStateDict().Select(p => p.Value) ?? []).ToList());

    [TestMethod]
    public void ZipsOfOneBaseShareItAndEachKeepsItsOwnOutputs()
    {
        var ml = new MLContext(seed: 1);
        var loaded = new[] { "bone", "lora", "bat" }.ToDictionary(n => n, n => ml.Model.Load(Zips[n], out _));
        var other = ml.Model.Load(Zips["two-labels"], out _);
        try
        {
            SharedBaseModel shared = Bone(loaded["bone"]).Model.Trained.Base;
            foreach (var (name, t) in loaded) Assert.AreSame(shared, Bone(t).Model.Trained.Base, $"{name} runs on the shared base");
            Assert.AreEqual(3, shared.Users);
            Assert.AreNotSame(shared, Bone(other).Model.Trained.Base, "a base with another head is another base");
            CollectionAssert.AreEquivalent(new[] { "Bone", "Lora", "Bat" }, loaded.Values.Select(t => Bone(t).Adapter.ToString()).ToArray());

            // Interleaved calls: each model computes with its own adapter (and head), as it did when it was fitted.
            foreach (string name in new[] { "bat", "bone", "lora", "bone", "bat" })
                CollectionAssert.AreEqual(FittedScores[name], Scores(ml, loaded[name]), new ToleranceComparer(1e-5), $"{name} scores");

            // Memory: the base once plus three small adapters, not three bases.
            long baseBytes = DistinctBytes(Bone(loaded["bone"]).Model.Trained.Use((m, _) => ModuleWeights.StateDict(m.Module).Select(p => p.Value).ToList()));
            long adapterBytes = loaded.Values.Sum(t => Bone(t).Model.Trained.Use((_, a) => a!.PeftStateDict().Sum(p => p.Value.numel() * p.Value.element_size())));
            long held = DistinctBytes(loaded.Values.SelectMany(t => TensorsOf(Bone(t))));
            Console.WriteLine($"one base: {baseBytes:N0} bytes; three adapters: {adapterBytes:N0}; held by the three models: {held:N0} (three private bases: {3 * baseBytes:N0})");
            Assert.IsLessThan(baseBytes + adapterBytes + baseBytes / 10, held, "three models hold about one base");
            Assert.IsGreaterThanOrEqualTo(baseBytes, held);

            // Releasing one leaves the others working; the last one releases the base.
            ((IDisposable)loaded["lora"]).Dispose();
            Assert.AreEqual(2, shared.Users);
            CollectionAssert.AreEqual(FittedScores["bone"], Scores(ml, loaded["bone"]), new ToleranceComparer(1e-5), "bone after lora was released");
            Assert.IsFalse(Bone(loaded["bone"]).Model.Trained.Use((_, a) => a!.AdapterNames.Count) > 2, "lora's adapter left the base");
            var again = ml.Model.Load(Zips["lora"], out _);
            Assert.AreSame(shared, Bone(again).Model.Trained.Base, "a later load joins the live base");
            CollectionAssert.AreEqual(FittedScores["lora"], Scores(ml, again), new ToleranceComparer(1e-5), "lora reloaded");
            ((IDisposable)again).Dispose();
        }
        finally
        {
            foreach (var t in loaded.Values) ((IDisposable)t).Dispose();
            ((IDisposable)other).Dispose();
        }
    }

    [TestMethod]
    public void AMergedExportOfASharedBaseLeavesTheOtherModelsUntouched()
    {
        var ml = new MLContext(seed: 1);
        var bat = ml.Model.Load(Zips["bat"], out _);
        var bone = ml.Model.Load(Zips["bone"], out _);
        try
        {
            string merged = Path.Combine(_dir, "merged-bat");
            Bone(bat).ExportMergedModel(merged);
            CollectionAssert.AreEqual(FittedScores["bone"], Scores(ml, bone), new ToleranceComparer(1e-5), "bone after bat's export");
            CollectionAssert.AreEqual(FittedScores["bat"], Scores(ml, bat), new ToleranceComparer(1e-5), "bat after its export");
            using var scope = NewDisposeScope();
            var plain = Microsoft.ML.Bone.Models.Roberta.RobertaForSequenceClassification.FromPretrained(merged);
            Assert.IsFalse(plain.modules().OfType<AdaptableLinear>().Any(l => l.Adapters.Count > 0));
        }
        finally
        {
            ((IDisposable)bat).Dispose();
            ((IDisposable)bone).Dispose();
        }
    }

    [TestMethod]
    public void CausalLMZipsShareTheirBaseToo()
    {
        var ml = new MLContext(seed: 1);
        IDataView data = ml.Data.LoadFromEnumerable(Enumerable.Range(0, 8).Select(i => new { Prompt = $"What is {i} + 1?", Response = $"#### {i + 1}" }).Select(p => new Pair { Prompt = p.Prompt, Response = p.Response }));
        var completions = new Dictionary<string, string[]>();
        var zips = new Dictionary<string, string>();
        foreach (var (name, adapter, lr) in new[] { ("a", AdapterKind.Bone, 5e-2), ("b", AdapterKind.Lora, 1e-1) })
        {
            using var fitted = ml.Bone.CausalLM(new BoneCausalLMOptions { ModelPath = _llama, Adapter = adapter, Rank = 4, MaxEpochs = 2, BatchSize = 4, MaxSequenceLength = 64, MaxNewTokens = 4, LearningRate = lr }).Fit(data);
            completions[name] = fitted.Complete(["What is 3 + 1?", "What is 5 + 1?"]).ToArray();
            zips[name] = Path.Combine(_dir, $"lm-{name}.zip");
            ml.Model.Save(fitted, data.Schema, zips[name]);
        }
        var a = (BoneCausalLMTransformer)ml.Model.Load(zips["a"], out _);
        var b = (BoneCausalLMTransformer)ml.Model.Load(zips["b"], out _);
        try
        {
            Assert.AreSame(a.Model.Trained.Base, b.Model.Trained.Base);
            foreach (var (name, t) in new[] { ("b", b), ("a", a), ("b", b) })
                CollectionAssert.AreEqual(completions[name], t.Complete(["What is 3 + 1?", "What is 5 + 1?"]).ToArray(), $"{name} completions");
        }
        finally
        {
            a.Dispose();
            b.Dispose();
        }
    }

    private sealed class Pair
    {
        public string Prompt { get; set; } = "";
        public string Response { get; set; } = "";
    }

    private sealed class ToleranceComparer(double tolerance) : System.Collections.IComparer
    {
        public int Compare(object? x, object? y) => Math.Abs((float)x! - (float)y!) <= tolerance ? 0 : 1;
    }
}
