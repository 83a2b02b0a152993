using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Tests.Adapters;
using Microsoft.ML.Bone.Training;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.Training;

/// <summary>A run stopped at any step and resumed from its checkpoint ends bit for bit where an unbroken run ends.</summary>
[TestClass]
[DoNotParallelize]
public sealed class CheckpointResumeTests
{
    private static readonly IReadOnlyDictionary<string, string> Identity = new Dictionary<string, string> { ["data"] = "d1", ["options"] = "o1" };

    private static (Tensor X, Tensor Y) Data()
    {
        Tensor x = (arange(64 * 8, dtype: ScalarType.Float32).reshape(64, 8) * 0.13).sin();
        Tensor y = (x.matmul((arange(8 * 3, dtype: ScalarType.Float32).reshape(8, 3) * 0.7).cos()) > 0).to(ScalarType.Int64).argmax(1);
        return (x, y);
    }

    /// <summary>Trains a fresh model (same initial values every time) and returns its final trainable values.</summary>
    private static (List<Tensor> Final, TrainingResult Result) Train(CheckpointSettings? checkpoints, int cancelAfterStep = 0)
    {
        var (x, y) = Data();
        var model = Fixtures.Deterministic(new TinyModel(), 3);
        // Dropout on the adapter path, so that the resumed run must also continue the dropout stream exactly.
        var adapted = AdapterModel.Inject(model, new BoneConfig { R = 4, Dropout = 0.2, TargetModules = ["q_proj", "v_proj", "up_proj", "down_proj"], ModulesToSave = ["classifier"] });
        var trainable = adapted.TrainableParameters().ToList();
        using var cancel = new CancellationTokenSource();
        var options = new TrainingOptions { LearningRate = 1e-2, BatchSize = 6, Epochs = 3, EvaluateEverySteps = 5, Seed = 4, Checkpoints = checkpoints };
        var progress = new SyncProgress(p => { if (cancelAfterStep > 0 && p.Step == cancelAfterStep && p.ValidationMetric is null) cancel.Cancel(); });
        var result = AdapterTrainingLoop.Run(model, trainable, Enumerable.Repeat(8, 64).ToList(),
            idx =>
            {
                Tensor index = tensor(idx.Select(i => (long)i).ToArray());
                return new BatchLoss(nn.functional.cross_entropy(model.call(x.index_select(0, index)), y.index_select(0, index)), idx.Length * 8);
            },
            // A real validation (minus the loss on every example): the best-validation snapshot is part of what must be restored.
            () => -nn.functional.cross_entropy(model.call(x), y).item<float>(), options, progress, cancellationToken: cancel.Token);
        return ([.. trainable.Select(p => p.detach().clone())], result);
    }

    private sealed class SyncProgress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }

    [TestMethod]
    public void ResumingAfterAnInterruptionGivesTheUninterruptedRunBitForBit()
    {
        using var scope = NewDisposeScope();
        string dir = Directory.CreateTempSubdirectory("bone-ckpt-").FullName;
        try
        {
            var (expected, unbroken) = Train(null);
            Assert.AreEqual(33, unbroken.StepsRun, "11 batches per epoch, 3 epochs");

            var settings = new CheckpointSettings(dir, EverySteps: 4, Keep: 2, Resume: true, Identity);
            Assert.Throws<OperationCanceledException>(() => Train(settings, cancelAfterStep: 14));
            string[] kept = [.. Directory.GetDirectories(dir).Select(Path.GetFileName).Order()!];
            CollectionAssert.AreEqual(new[] { "checkpoint-00000008", "checkpoint-00000012" }, kept, "the two newest are kept");
            // A checkpoint cut short (no state.json) and a leftover temporary folder are passed over.
            Directory.CreateDirectory(Path.Combine(dir, "checkpoint-00000013"));
            Directory.CreateDirectory(Path.Combine(dir, ".checkpoint-00000016.tmp-999999-x"));

            var (resumed, result) = Train(settings);
            Assert.AreEqual(33, result.StepsRun);
            Assert.AreEqual(unbroken.History.Count, result.History.Count, "the history carries on from the checkpoint");
            CollectionAssert.AreEqual(unbroken.History.Select(h => h.Loss).ToArray(), result.History.Select(h => h.Loss).ToArray(), "every step's loss");
            Assert.AreEqual(unbroken.BestValidationMetric, result.BestValidationMetric);
            for (int i = 0; i < expected.Count; i++)
                Assert.IsTrue(expected[i].eq(resumed[i]).all().item<bool>(), $"trainable tensor {i} equals the unbroken run's bit for bit");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [TestMethod]
    public void ADamagedNewestCheckpointIsSkippedAndAnotherRunsCheckpointIsRefused()
    {
        using var scope = NewDisposeScope();
        string dir = Directory.CreateTempSubdirectory("bone-ckpt-").FullName;
        try
        {
            var settings = new CheckpointSettings(dir, EverySteps: 4, Keep: 3, Resume: true, Identity);
            Assert.Throws<OperationCanceledException>(() => Train(settings, cancelAfterStep: 13));
            string weights = Path.Combine(dir, "checkpoint-00000012", "weights.safetensors");
            byte[] bytes = File.ReadAllBytes(weights);
            bytes[^1] ^= 0x55;
            File.WriteAllBytes(weights, bytes);
            var (expected, _) = Train(null);
            var (resumed, result) = Train(settings);
            Assert.AreEqual(33, result.StepsRun);
            for (int i = 0; i < expected.Count; i++) Assert.IsTrue(expected[i].eq(resumed[i]).all().item<bool>(), "resumed from step 8 instead, same result");

            var other = settings with { Identity = new Dictionary<string, string> { ["data"] = "d2", ["options"] = "o1" } };
            var error = Assert.ThrowsExactly<InvalidOperationException>(() => Train(other));
            StringAssert.Contains(error.Message, "(data differ)", "names the part that differs, only that one");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
