using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Tests.Adapters;
using Microsoft.ML.Bone.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.Training;

[TestClass]
public sealed class LearningRateScheduleTests
{
    [TestMethod]
    public void WarmupThenDecayAsTransformersSchedulers()
    {
        const double lr = 1e-3;
        // 10 steps, 2 warmup: warmup (s+1)/2, then progress (s-2)/8.
        Assert.AreEqual(lr * 0.5, LearningRateSchedule.At(LearningRateScheduleKind.Linear, lr, 0, 10, 2), 1e-15);
        Assert.AreEqual(lr * 1.0, LearningRateSchedule.At(LearningRateScheduleKind.Linear, lr, 1, 10, 2), 1e-15);
        Assert.AreEqual(lr * (1 - 3 / 8.0), LearningRateSchedule.At(LearningRateScheduleKind.Linear, lr, 5, 10, 2), 1e-15);
        Assert.AreEqual(lr * 0.5 * (1 + Math.Cos(Math.PI * 3 / 8.0)), LearningRateSchedule.At(LearningRateScheduleKind.Cosine, lr, 5, 10, 2), 1e-15);
        Assert.AreEqual(lr, LearningRateSchedule.At(LearningRateScheduleKind.Constant, lr, 9, 10, 2), 1e-15);
        Assert.AreEqual(lr * 0.5, LearningRateSchedule.At(LearningRateScheduleKind.Constant, lr, 0, 10, 2), 1e-15);
    }

    [TestMethod]
    public void BucketedBatchesCoverEveryExampleOnceAndGroupSimilarLengths()
    {
        int[] lengths = Enumerable.Range(0, 1000).Select(i => (i * 7919) % 97 + 1).ToArray();
        List<int[]> batches = LengthBucketedBatches.Plan(lengths, 16, new Random(5));
        CollectionAssert.AreEquivalent(Enumerable.Range(0, 1000).ToArray(), batches.SelectMany(b => b).ToArray());
        Assert.IsTrue(batches.All(b => b.Length is > 0 and <= 16));
        double spread = batches.Average(b => b.Max(i => lengths[i]) - b.Min(i => lengths[i]));
        Assert.IsTrue(spread < 10, $"mean length spread within a batch is {spread:F1}, lengths range over 97");
        CollectionAssert.AreEqual(batches.SelectMany(b => b).ToArray(), LengthBucketedBatches.Plan(lengths, 16, new Random(5)).SelectMany(b => b).ToArray(), "same seed, same plan");
    }
}

// Training reads torch's global generator (dropout, init); run alone so the same seed gives the same run.
[TestClass]
[DoNotParallelize]
public sealed class AdapterTrainingLoopTests
{
    private sealed record Data(Tensor X, Tensor Y);

    private static Data Task()
    {
        // Targets from a fixed "teacher": a smooth function of the inputs the small model can fit.
        Tensor x = (arange(64 * 8, dtype: ScalarType.Float32).reshape(64, 8) * 0.13).sin();
        Tensor y = (x.matmul((arange(8 * 3, dtype: ScalarType.Float32).reshape(8, 3) * 0.7).cos()) > 0).to(ScalarType.Int64).argmax(1);
        return new Data(x, y);
    }

    private static (TinyModel Model, AdapterModel Adapted) Model()
    {
        var model = Fixtures.Deterministic(new TinyModel(), 3);
        return (model, AdapterModel.Inject(model, new BoneConfig { R = 4, TargetModules = ["q_proj", "v_proj", "up_proj", "down_proj"], ModulesToSave = ["classifier"] }));
    }

    private static TrainingResult Train(TinyModel model, AdapterModel adapted, Data data, TrainingOptions options, Func<double>? validate = null, CancellationToken ct = default) =>
        AdapterTrainingLoop.Run(model, adapted.TrainableParameters().ToList(), Enumerable.Repeat(8, 64).ToList(),
            idx =>
            {
                Tensor index = tensor(idx.Select(i => (long)i).ToArray());
                return new BatchLoss(nn.functional.cross_entropy(model.call(data.X.index_select(0, index)), data.Y.index_select(0, index)), idx.Length * 8);
            },
            validate, options, cancellationToken: ct);

    [TestMethod]
    public void LossFallsAndOnlyTrainableParametersChange()
    {
        using var scope = NewDisposeScope();
        var data = Task();
        var (model, adapted) = Model();
        var frozen = model.named_parameters().Where(p => !p.parameter.requires_grad).ToDictionary(p => p.name, p => p.parameter.detach().clone());
        var reports = new List<TrainingProgress>();
        var result = AdapterTrainingLoop.Run(model, adapted.TrainableParameters().ToList(), Enumerable.Repeat(8, 64).ToList(),
            idx =>
            {
                Tensor index = tensor(idx.Select(i => (long)i).ToArray());
                return new BatchLoss(nn.functional.cross_entropy(model.call(data.X.index_select(0, index)), data.Y.index_select(0, index)), idx.Length * 8);
            },
            null, new TrainingOptions { LearningRate = 1e-2, BatchSize = 8, Epochs = 15, WarmupRatio = 0.1 }, new Progress<TrainingProgress>(reports.Add));

        Assert.AreEqual(8 * 15, result.StepsRun);
        double early = result.History.Take(8).Average(h => h.Loss), late = result.History.TakeLast(8).Average(h => h.Loss);
        Assert.IsTrue(late < early * 0.6, $"loss {early:F3} -> {late:F3}");
        foreach (var (name, before) in frozen)
            Assert.IsTrue(before.eq(model.named_parameters().First(p => p.name == name).parameter).all().item<bool>(), $"{name} is frozen");
        Assert.IsFalse(model.training, "left in eval mode");
    }

    [TestMethod]
    public void SameSeedGivesTheSameRun()
    {
        using var scope = NewDisposeScope();
        var data = Task();
        var options = new TrainingOptions { LearningRate = 5e-3, BatchSize = 8, Epochs = 2, GradientAccumulationSteps = 2, Seed = 9, Schedule = LearningRateScheduleKind.Cosine };
        var (m1, a1) = Model();
        var (m2, a2) = Model();
        var r1 = Train(m1, a1, data, options);
        var r2 = Train(m2, a2, data, options);
        CollectionAssert.AreEqual(r1.History.Select(h => h.Loss).ToArray(), r2.History.Select(h => h.Loss).ToArray());
        Assert.AreEqual(8, r1.StepsRun, "64 examples / 8 per batch / 2 accumulated × 2 epochs");
    }

    [TestMethod]
    public void EarlyStoppingRestoresTheBestWeights()
    {
        using var scope = NewDisposeScope();
        var data = Task();
        var (model, adapted) = Model();
        // A validation metric that peaks at the second validation and then only gets worse.
        var metrics = new Queue<double>([0.1, 0.9, 0.5, 0.4, 0.3]);
        Tensor? atBest = null;
        int calls = 0;
        var result = Train(model, adapted, data, new TrainingOptions { LearningRate = 1e-2, BatchSize = 8, Epochs = 10, EvaluateEverySteps = 4, EarlyStoppingPatience = 2 },
            () =>
            {
                if (++calls == 2) atBest = adapted.TrainableParameters().First().detach().clone();
                return metrics.Dequeue();
            });
        Assert.IsTrue(result.StoppedEarly);
        Assert.AreEqual(0.9, result.BestValidationMetric);
        Assert.AreEqual(16, result.StepsRun, "validations at steps 4, 8, 12, 16; patience 2 after the best at 8");
        Assert.IsTrue(atBest!.eq(adapted.TrainableParameters().First()).all().item<bool>(), "weights of the best validation are back");
    }

    [TestMethod]
    public void NonFiniteStepsAreSkippedAndTooManyInARowStopTraining()
    {
        using var scope = NewDisposeScope();
        var data = Task();
        var (model, adapted) = Model();
        var lines = new List<string>();
        int call = 0;
        // Micro-batch 3 (step 3) yields a NaN loss: that step must not move the adapter, the others train as usual.
        Dictionary<string, Tensor>? beforeBad = null, afterBad = null;
        BatchLoss LossOf(int[] idx)
        {
            call++;
            var trainable = adapted.TrainableParameters().ToList();
            if (call == 3) beforeBad = trainable.Select((p, i) => (i, p)).ToDictionary(t => t.i.ToString(), t => t.p.detach().clone().DetachFromDisposeScope());
            if (call == 4) afterBad = trainable.Select((p, i) => (i, p)).ToDictionary(t => t.i.ToString(), t => t.p.detach().clone().DetachFromDisposeScope());
            Tensor index = tensor(idx.Select(i => (long)i).ToArray());
            Tensor loss = nn.functional.cross_entropy(model.call(data.X.index_select(0, index)), data.Y.index_select(0, index));
            return new BatchLoss(call == 3 ? loss * float.NaN : loss, idx.Length * 8);
        }
        var options = new TrainingOptions { LearningRate = 1e-2, BatchSize = 8, Epochs = 1, MaxGradNorm = 0 };
        var result = AdapterTrainingLoop.Run(model, adapted.TrainableParameters().ToList(), Enumerable.Repeat(8, 64).ToList(), LossOf, null, options, log: lines.Add);
        Assert.AreEqual(8, result.StepsRun);
        Assert.IsTrue(lines.Any(l => l.Contains("step 3 skipped") && l.Contains("NaN")), string.Join("\n", lines));
        foreach (var (key, before) in beforeBad!) Assert.IsTrue(before.eq(afterBad![key]).all().item<bool>(), "the skipped step changed nothing");
        Assert.IsTrue(adapted.TrainableParameters().All(p => isfinite(p).all().item<bool>()), "no NaN reached the adapter");

        // Always NaN: training stops after MaxConsecutiveNonFiniteSteps with an error that says what to do.
        var (model2, adapted2) = Model();
        var error = Assert.ThrowsExactly<InvalidOperationException>(() => AdapterTrainingLoop.Run(model2, adapted2.TrainableParameters().ToList(), Enumerable.Repeat(8, 64).ToList(),
            idx => new BatchLoss(model2.call(data.X.index_select(0, tensor(idx.Select(i => (long)i).ToArray()))).sum() * float.NaN, idx.Length * 8),
            null, new TrainingOptions { LearningRate = 1e-2, BatchSize = 8, Epochs = 1, MaxConsecutiveNonFiniteSteps = 3 }));
        StringAssert.Contains(error.Message, "not finite in 3 steps in a row");
        Assert.IsTrue(adapted2.TrainableParameters().All(p => isfinite(p).all().item<bool>()), "the adapter is left as it was");
    }

    [TestMethod]
    public void CancellationStopsTraining()
    {
        using var scope = NewDisposeScope();
        var (model, adapted) = Model();
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.ThrowsExactly<OperationCanceledException>(() => Train(model, adapted, Task(), new TrainingOptions(), ct: cts.Token));
    }
}
