using Microsoft.ML.Bone.Models;
using Microsoft.ML.Bone.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tasks;

/// <summary>A prompt and the response the model should learn to continue it with (ids, response ending in EOS).</summary>
public sealed record PromptResponse(int[] Prompt, int[] Response);

/// <summary>
/// Instruction tuning for causal LMs: the loss covers response tokens only (prompt and padding get the ignored label
/// −100), labels are shifted once (position t predicts token t + 1), and batches are right-padded.
/// </summary>
public static class CausalLanguageModeling
{
    /// <summary>The label that the loss ignores.</summary>
    public const long IgnoreIndex = -100;

    /// <summary>
    /// Ids, attention mask and labels [B, T] for the given examples. Over-long examples lose prompt tokens from the
    /// left first (the response is what is learned), then response tokens from the right.
    /// </summary>
    public static (Tensor Ids, Tensor Mask, Tensor Labels) Batch(IReadOnlyList<PromptResponse> examples, IReadOnlyList<int> indices, int padId, int maxLength, Device? device = null)
    {
        var rows = indices.Select(i => Fit(examples[i], maxLength)).ToList();
        int width = rows.Max(r => r.Prompt.Length + r.Response.Length);
        var ids = new long[rows.Count * width];
        var mask = new long[rows.Count * width];
        var labels = new long[rows.Count * width];
        Array.Fill(ids, padId);
        Array.Fill(labels, IgnoreIndex);
        for (int b = 0; b < rows.Count; b++)
        {
            var (prompt, response) = rows[b];
            for (int t = 0; t < prompt.Length + response.Length; t++)
            {
                bool isResponse = t >= prompt.Length;
                int id = isResponse ? response[t - prompt.Length] : prompt[t];
                ids[b * width + t] = id;
                mask[b * width + t] = 1;
                if (isResponse) labels[b * width + t] = id;
            }
        }
        return (tensor(ids, [rows.Count, width], device: device), tensor(mask, [rows.Count, width], device: device), tensor(labels, [rows.Count, width], device: device));
    }

    /// <summary>Mean cross-entropy of position t's logits against label t + 1, over non-ignored labels, in float32.</summary>
    public static Tensor Loss(Tensor logits, Tensor labels)
    {
        long vocab = logits.shape[^1];
        Tensor predictions = logits.narrow(1, 0, logits.shape[1] - 1).to(ScalarType.Float32).reshape(-1, vocab);
        Tensor targets = labels.narrow(1, 1, labels.shape[1] - 1).reshape(-1);
        return nn.functional.cross_entropy(predictions, targets, ignore_index: IgnoreIndex);
    }

    /// <summary>Fine-tunes <paramref name="model"/> on prompt/response pairs; validation maximises −(mean response loss).</summary>
    public static TrainingResult Train(ICausalLanguageModel model, IReadOnlyList<Parameter> trainable, IReadOnlyList<PromptResponse> examples, int padId, int maxLength,
        TrainingOptions options, IReadOnlyList<PromptResponse>? validation = null, IProgress<TrainingProgress>? progress = null, Action<string>? log = null,
        CancellationToken cancellationToken = default)
    {
        Device device = model.Module.parameters().First().device;
        return AdapterTrainingLoop.Run(model.Module, trainable, examples.Select(e => Math.Min(maxLength, e.Prompt.Length + e.Response.Length)).ToList(),
            batch =>
            {
                var (ids, mask, labels) = Batch(examples, batch, padId, maxLength, device);
                return new BatchLoss(Loss(model.Forward(ids, mask), labels), mask.sum().item<long>());
            },
            validation is null ? null : () => -Evaluate(model, validation, padId, maxLength, options.BatchSize).MeanLoss,
            options, progress, log, cancellationToken);
    }

    /// <summary>Token-weighted mean loss over every response token, and how many there were (no gradients, eval mode).</summary>
    public static (double MeanLoss, long Tokens) Evaluate(ICausalLanguageModel model, IReadOnlyList<PromptResponse> examples, int padId, int maxLength, int batchSize)
    {
        bool wasTraining = model.Module.training;
        model.Module.eval();
        Device device = model.Module.parameters().First().device;
        double total = 0;
        long tokens = 0;
        int[] order = Enumerable.Range(0, examples.Count).OrderBy(i => examples[i].Prompt.Length + examples[i].Response.Length).ToArray();
        using (no_grad())
        {
            for (int start = 0; start < order.Length; start += batchSize)
            {
                using var scope = NewDisposeScope();
                var (ids, mask, labels) = Batch(examples, order[start..Math.Min(order.Length, start + batchSize)], padId, maxLength, device);
                long count = labels.narrow(1, 1, labels.shape[1] - 1).ne(IgnoreIndex).sum().item<long>();
                if (count == 0) continue;
                total += Loss(model.Forward(ids, mask), labels).item<float>() * count;
                tokens += count;
            }
        }
        if (wasTraining) model.Module.train();
        return (tokens == 0 ? double.NaN : total / tokens, tokens);
    }

    private static (int[] Prompt, int[] Response) Fit(PromptResponse e, int maxLength)
    {
        int overflow = e.Prompt.Length + e.Response.Length - maxLength;
        if (overflow <= 0) return (e.Prompt, e.Response);
        int fromPrompt = Math.Min(overflow, Math.Max(0, e.Prompt.Length - 1));
        int[] prompt = e.Prompt.Length > 0 ? [e.Prompt[0], .. e.Prompt[(1 + fromPrompt)..]] : e.Prompt; // keep BOS
        int[] response = e.Response[..Math.Min(e.Response.Length, maxLength - prompt.Length)];
        return (prompt, response);
    }
}
