using Microsoft.ML.Bone.Models;
using Microsoft.ML.Bone.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tasks;

/// <summary>Batching, loss and batched inference for sequence classification and regression.</summary>
public static class SequenceClassification
{
    /// <summary>Ids [B, T] and mask [B, T] for the given examples, right-padded to the longest.</summary>
    public static (Tensor Ids, Tensor Mask) Pad(IReadOnlyList<int[]> sequences, IReadOnlyList<int> indices, int padId, Device? device = null)
    {
        int length = indices.Max(i => sequences[i].Length);
        var ids = new long[indices.Count * length];
        var mask = new long[indices.Count * length];
        Array.Fill(ids, padId);
        for (int b = 0; b < indices.Count; b++)
        {
            int[] s = sequences[indices[b]];
            for (int t = 0; t < s.Length; t++)
            {
                ids[b * length + t] = s[t];
                mask[b * length + t] = 1;
            }
        }
        return (tensor(ids, [indices.Count, length], device: device), tensor(mask, [indices.Count, length], device: device));
    }

    /// <summary>Mean cross-entropy (labels are class indices) or, for one output, mean squared error.</summary>
    public static Tensor Loss(Tensor logits, Tensor labels) =>
        logits.shape[1] == 1
            ? nn.functional.mse_loss(logits.squeeze(1).to(ScalarType.Float32), labels.to(ScalarType.Float32))
            : nn.functional.cross_entropy(logits.to(ScalarType.Float32), labels.to(ScalarType.Int64));

    /// <summary>
    /// Fine-tunes <paramref name="model"/> on token ids and targets (class index, or the value for regression).
    /// With <paramref name="validationSequences"/>, <paramref name="validationMetric"/> turns their predicted logits
    /// into the metric to maximise.
    /// </summary>
    public static TrainingResult Train(
        ISequenceClassifier model, IReadOnlyList<Parameter> trainable, IReadOnlyList<int[]> sequences, IReadOnlyList<float> targets, int padId,
        TrainingOptions options, IReadOnlyList<int[]>? validationSequences = null, Func<float[][], double>? validationMetric = null,
        IProgress<TrainingProgress>? progress = null, Action<string>? log = null, CancellationToken cancellationToken = default)
    {
        if (sequences.Count != targets.Count) throw new ArgumentException("Each sequence needs one target.");
        Device device = model.Module.parameters().First().device;
        var lengths = sequences.Select(s => s.Length).ToList();
        return AdapterTrainingLoop.Run(model.Module, trainable, lengths,
            batch =>
            {
                var (ids, mask) = Pad(sequences, batch, padId, device);
                Tensor labels = tensor(batch.Select(i => targets[i]).ToArray(), device: device);
                Tensor logits = model.Logits(ids, mask);
                return new BatchLoss(Loss(logits, labels), batch.Sum(i => sequences[i].Length));
            },
            validationSequences is null || validationMetric is null ? null : () => validationMetric(Predict(model, validationSequences, padId, options.BatchSize)),
            options, progress, log, cancellationToken);
    }

    /// <summary>
    /// Logits (or, with <paramref name="softmax"/>, class probabilities) for every sequence, in input order: eval
    /// mode, no gradients, batches of similar length.
    /// </summary>
    public static float[][] Predict(ISequenceClassifier model, IReadOnlyList<int[]> sequences, int padId, int batchSize, bool softmax = false)
    {
        var result = new float[sequences.Count][];
        if (sequences.Count == 0) return result;
        bool wasTraining = model.Module.training;
        model.Module.eval();
        Device device = model.Module.parameters().First().device;
        int[] order = Enumerable.Range(0, sequences.Count).OrderBy(i => sequences[i].Length).ToArray();
        using (no_grad())
        {
            for (int start = 0; start < order.Length; start += batchSize)
            {
                using var scope = NewDisposeScope();
                int[] batch = order[start..Math.Min(start + batchSize, order.Length)];
                var (ids, mask) = Pad(sequences, batch, padId, device);
                Tensor logits = model.Logits(ids, mask).to(ScalarType.Float32);
                if (softmax) logits = logits.softmax(-1);
                float[] flat = logits.cpu().data<float>().ToArray();   // to the host first: device memory cannot be read directly
                int labels = flat.Length / batch.Length;
                for (int b = 0; b < batch.Length; b++) result[batch[b]] = flat[(b * labels)..((b + 1) * labels)];
            }
        }
        if (wasTraining) model.Module.train();
        return result;
    }
}
