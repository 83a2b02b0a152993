using System.Diagnostics;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Training;

/// <summary>One micro-batch's mean loss and how many real (non-padding) tokens it covered.</summary>
public readonly record struct BatchLoss(Tensor Loss, long Tokens);

/// <summary>The outcome of <see cref="AdapterTrainingLoop.Run"/>.</summary>
/// <param name="History">Every progress report, in order.</param>
/// <param name="StepsRun">Optimizer steps taken.</param>
/// <param name="BestValidationMetric">Best validation metric seen (its weights were restored), or null.</param>
/// <param name="StoppedEarly">True when early stopping ended training.</param>
public sealed record TrainingResult(IReadOnlyList<TrainingProgress> History, int StepsRun, double? BestValidationMetric, bool StoppedEarly);

/// <summary>
/// The fine-tuning loop shared by every task: length-bucketed micro-batches, AdamW on the trainable parameters only,
/// gradient accumulation, warmup plus linear / cosine / constant decay, gradient clipping, periodic validation with
/// early stopping (the best weights are restored), cancellation and progress reports.
/// </summary>
public static class AdapterTrainingLoop
{
    /// <summary>Trains <paramref name="trainable"/> (everything else must already be frozen).</summary>
    /// <param name="model">The model; put in train mode while training and eval mode for validation and at the end.</param>
    /// <param name="trainable">Parameters the optimizer updates.</param>
    /// <param name="lengths">Length of each training example (for bucketing); the count defines the data set.</param>
    /// <param name="lossOf">Forward pass plus loss for a batch of example indices, in train mode.</param>
    /// <param name="validate">Returns the validation metric (higher is better), or null for no validation.</param>
    /// <param name="options">Optimizer, schedule and stopping settings.</param>
    /// <param name="progress">Receives a report after every optimizer step and every validation.</param>
    /// <param name="log">Receives one line per epoch, validation and every 10% of the steps.</param>
    /// <param name="cancellationToken">Checked before every micro-batch.</param>
    /// <remarks>
    /// A step whose loss or gradients are not finite is skipped with a warning in <paramref name="log"/>; after
    /// <see cref="TrainingOptions.MaxConsecutiveNonFiniteSteps"/> such steps in a row, training stops with an
    /// <see cref="InvalidOperationException"/>.
    /// </remarks>
    public static TrainingResult Run(
        nn.Module model, IReadOnlyList<Parameter> trainable, IReadOnlyList<int> lengths, Func<int[], BatchLoss> lossOf,
        Func<double>? validate, TrainingOptions options, IProgress<TrainingProgress>? progress = null,
        Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        if (lengths.Count == 0) throw new ArgumentException("There are no training examples.", nameof(lengths));
        if (trainable.Count == 0) throw new ArgumentException("There are no trainable parameters.", nameof(trainable));

        var random = new Random(options.Seed);
        // Dropout draws from a stream of this run's seed, not torch's global generator (unless the caller gave one).
        using var dropoutRandom = new Nn.RandomSource((ulong)options.Seed);
        var unseeded = model.modules().OfType<Nn.Dropout>().Where(d => d.Random is null).ToList();
        foreach (Nn.Dropout d in unseeded) d.Random = dropoutRandom;
        try
        {
            return RunSeeded(model, trainable, lengths, lossOf, validate, options, progress, log, cancellationToken, random, dropoutRandom);
        }
        finally
        {
            foreach (Nn.Dropout d in unseeded) d.Random = null;
        }
    }

    private static double GradientNorm(IReadOnlyList<Parameter> trainable)
    {
        using var scope = NewDisposeScope();
        var norms = trainable.Where(p => p.grad is not null).Select(p => p.grad!.norm()).ToArray();
        return norms.Length == 0 ? 0 : stack(norms).norm().item<float>();
    }

    private static TrainingResult RunSeeded(
        nn.Module model, IReadOnlyList<Parameter> trainable, IReadOnlyList<int> lengths, Func<int[], BatchLoss> lossOf,
        Func<double>? validate, TrainingOptions options, IProgress<TrainingProgress>? progress, Action<string>? log,
        CancellationToken cancellationToken, Random random, Nn.RandomSource dropout)
    {
        int batchesPerEpoch = (lengths.Count + options.BatchSize - 1) / options.BatchSize;
        int stepsPerEpoch = (batchesPerEpoch + options.GradientAccumulationSteps - 1) / options.GradientAccumulationSteps;
        int totalSteps = stepsPerEpoch * options.Epochs;
        if (options.MaxSteps > 0) totalSteps = Math.Min(totalSteps, options.MaxSteps);
        int warmupSteps = (int)Math.Ceiling(totalSteps * options.WarmupRatio);

        using var optimizer = CreateOptimizer(trainable, options);
        var history = new List<TrainingProgress>();
        var clock = Stopwatch.StartNew();
        long tokens = 0;
        int step = 0, sinceImprovement = 0, nonFiniteInARow = 0;
        double? best = null;
        Dictionary<Parameter, Tensor>? bestWeights = null;
        bool stoppedEarly = false;

        int startEpoch = 1, startBatch = 0;
        if (options.Checkpoints is { Resume: true } resume && TrainingCheckpoints.Restore(resume, trainable, optimizer, dropout, log) is var (state, restoredBest))
        {
            (step, tokens, sinceImprovement, best, nonFiniteInARow) = (state.Step, state.Tokens, state.SinceImprovement, state.Best, state.NonFiniteInARow);
            history.AddRange(state.History);
            bestWeights = restoredBest;
            (startEpoch, startBatch) = (state.Epoch, state.NextBatch);
        }

        for (int epoch = 1; epoch <= options.Epochs && step < totalSteps && !stoppedEarly; epoch++)
        {
            // Every epoch's plan is drawn, even those a resumed run skips, so the batch order stays that of one run.
            List<int[]> batches = LengthBucketedBatches.Plan(lengths, options.BatchSize, random);
            if (epoch < startEpoch) continue;
            model.train();
            for (int first = epoch == startEpoch ? startBatch : 0; first < batches.Count && step < totalSteps; first += options.GradientAccumulationSteps)
            {
                double lr = LearningRateSchedule.At(options.Schedule, options.LearningRate, step, totalSteps, warmupSteps);
                foreach (var group in optimizer.ParamGroups) group.LearningRate = lr;
                int micro = Math.Min(options.GradientAccumulationSteps, batches.Count - first);
                double loss = 0;
                // Everything a step creates (gradient views from zero_grad, norms from clipping, the micro-batches'
                // activations) is disposed with the step; the optimizer keeps its own state outside any scope.
                using (NewDisposeScope())
                {
                    optimizer.zero_grad();
                    for (int m = 0; m < micro; m++)
                    {
                        cancellationToken.ThrowIfCancellationRequested();
                        // One scope per micro-batch: its activations go as soon as its backward pass is done.
                        using var scope = NewDisposeScope();
                        BatchLoss batch = lossOf(batches[first + m]);
                        (batch.Loss / micro).backward();
                        Nn.BackwardOutputs.ReleasePrevious();   // the last custom backward's gradients, now consumed
                        loss += batch.Loss.item<float>() / micro;
                        tokens += batch.Tokens;
                    }
                    // A non-finite loss or gradient would poison the adapter and AdamW's moments for good: skip the update.
                    double norm = !double.IsFinite(loss) ? double.NaN
                        : options.MaxGradNorm > 0 ? nn.utils.clip_grad_norm_(trainable, options.MaxGradNorm) : GradientNorm(trainable);
                    if (double.IsFinite(norm))
                    {
                        optimizer.step();
                        nonFiniteInARow = 0;
                    }
                    else
                    {
                        nonFiniteInARow++;
                        log?.Invoke($"warning: step {step + 1} skipped, its {(double.IsFinite(loss) ? "gradient norm" : "loss")} is {(double.IsFinite(loss) ? norm : loss)}");
                        if (nonFiniteInARow >= options.MaxConsecutiveNonFiniteSteps)
                            throw new InvalidOperationException($"Training stopped at step {step + 1}: the loss or gradients were not finite in {nonFiniteInARow} steps in a row; lower the learning rate (or check the data).");
                    }
                }
                step++;

                TimeSpan elapsed = clock.Elapsed;
                var report = new TrainingProgress(step, totalSteps, epoch, loss, lr, tokens / Math.Max(elapsed.TotalSeconds, 1e-9),
                    elapsed, TimeSpan.FromSeconds(elapsed.TotalSeconds / step * (totalSteps - step)));
                history.Add(report);
                progress?.Report(report);
                if (step == 1 || step % Math.Max(1, totalSteps / 10) == 0) log?.Invoke(report.ToString());

                bool endOfEpoch = first + options.GradientAccumulationSteps >= batches.Count || step == totalSteps;
                bool evaluate = validate is not null && (options.EvaluateEverySteps > 0 ? step % options.EvaluateEverySteps == 0 || step == totalSteps : endOfEpoch);
                if (evaluate)
                {
                    double metric = Validate(model, validate!);
                    var validated = report with { ValidationMetric = metric };
                    history.Add(validated);
                    progress?.Report(validated);
                    log?.Invoke(validated.ToString());
                    if (best is null || metric > best)
                    {
                        best = metric;
                        sinceImprovement = 0;
                        bestWeights = Snapshot(trainable, bestWeights);
                    }
                    else if (options.EarlyStoppingPatience > 0 && ++sinceImprovement >= options.EarlyStoppingPatience)
                    {
                        log?.Invoke($"early stopping at step {step}: no improvement on {best:F4} in {sinceImprovement} validations");
                        stoppedEarly = true;
                        break;
                    }
                    model.train();
                }
                Checkpoint(epoch, first + options.GradientAccumulationSteps);
            }
        }

        // After a step (and its validation): the position is the next batch of this epoch.
        void Checkpoint(int epoch, int nextBatch)
        {
            if (options.Checkpoints is not { } c || step % c.EverySteps != 0) return;
            var state = new LoopState(step, epoch, nextBatch, tokens, sinceImprovement, best, nonFiniteInARow, [.. history]);
            TrainingCheckpoints.Write(c, state, trainable, bestWeights, optimizer, dropout);
        }

        if (bestWeights is not null)
        {
            using (no_grad()) foreach (var (p, saved) in bestWeights) p.copy_(saved);
            foreach (Tensor t in bestWeights.Values) t.Dispose();
        }
        model.eval();
        return new TrainingResult(history, step, best, stoppedEarly);
    }

    private static double Validate(nn.Module model, Func<double> validate)
    {
        model.eval();
        using var noGrad = no_grad();
        return validate();
    }

    private static Dictionary<Parameter, Tensor> Snapshot(IReadOnlyList<Parameter> trainable, Dictionary<Parameter, Tensor>? previous)
    {
        if (previous is not null) foreach (Tensor t in previous.Values) t.Dispose();
        using var noGrad = no_grad();
        return trainable.ToDictionary(p => p, p => p.detach().clone().DetachFromDisposeScope());
    }

    // Decay matrices only; biases and norm scales are left alone, as transformers' Trainer does.
    private static AdamW CreateOptimizer(IReadOnlyList<Parameter> trainable, TrainingOptions options)
    {
        var (b1, b2, eps) = options.Adam;
        var decay = trainable.Where(p => p.ndim >= 2).ToList();
        var noDecay = trainable.Where(p => p.ndim < 2).ToList();
        var groups = new List<AdamW.ParamGroup>();
        if (decay.Count > 0) groups.Add(new AdamW.ParamGroup(decay, options.LearningRate, b1, b2, eps, options.WeightDecay));
        if (noDecay.Count > 0) groups.Add(new AdamW.ParamGroup(noDecay, options.LearningRate, b1, b2, eps, 0));
        return optim.AdamW(groups, options.LearningRate, b1, b2, eps, options.WeightDecay);
    }
}
