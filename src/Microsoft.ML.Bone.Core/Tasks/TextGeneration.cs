using Microsoft.ML.Bone.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tasks;

/// <summary>How tokens are chosen during generation.</summary>
public sealed record GenerationOptions
{
    /// <summary>Tokens to generate at most. Default 128.</summary>
    public int MaxNewTokens { get; init; } = 128;
    /// <summary>0 (default) decodes greedily; otherwise logits are divided by it and sampled.</summary>
    public double Temperature { get; init; }
    /// <summary>Sample among the k most likely tokens only; 0 (default) = no limit.</summary>
    public int TopK { get; init; }
    /// <summary>Sample among the smallest set of tokens whose probability reaches p; 1 (default) = no limit.</summary>
    public double TopP { get; init; } = 1;
    /// <summary>Divides positive (multiplies negative) logits of tokens already present; 1 (default) = off.</summary>
    public double RepetitionPenalty { get; init; } = 1;
    /// <summary>Seed of the sampling generator.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Checks values; errors name the option.</summary>
    public void Validate()
    {
        if (MaxNewTokens < 0) throw new ArgumentOutOfRangeException(nameof(MaxNewTokens), MaxNewTokens, "must be ≥ 0");
        if (Temperature < 0) throw new ArgumentOutOfRangeException(nameof(Temperature), Temperature, "must be ≥ 0");
        if (TopK < 0) throw new ArgumentOutOfRangeException(nameof(TopK), TopK, "must be ≥ 0");
        if (TopP is <= 0 or > 1) throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "must be in (0, 1]");
        if (RepetitionPenalty <= 0) throw new ArgumentOutOfRangeException(nameof(RepetitionPenalty), RepetitionPenalty, "must be positive");
    }
}

/// <summary>
/// Cached generation for a batch of prompts: prompts are left-padded to one length, positions count real tokens
/// only, and each step feeds one token per row, the model carrying its own state between steps (a key/value cache,
/// or a recurrent state). Rows stop at an end-of-sequence id, when <c>shouldStop</c> says so (stop strings), or after
/// <see cref="GenerationOptions.MaxNewTokens"/>. Only the last position's logits are computed at each step.
/// </summary>
public static class TextGeneration
{
    /// <summary>Generated ids per prompt (end-of-sequence ids excluded).</summary>
    /// <param name="model">The model (put in eval mode for the call).</param>
    /// <param name="prompts">Token ids of each prompt (non-empty).</param>
    /// <param name="options">Decoding settings.</param>
    /// <param name="endOfSequence">Ids that end a row.</param>
    /// <param name="padId">Id used for left padding (never attended to).</param>
    /// <param name="shouldStop">Called with a row and its generated ids after each token; true ends the row.</param>
    /// <param name="onToken">Called with (row, id) as each token is produced, for streaming.</param>
    public static List<int>[] Generate(ICausalLanguageModel model, IReadOnlyList<int[]> prompts, GenerationOptions options, IReadOnlyCollection<int> endOfSequence,
        int padId, Func<int, IReadOnlyList<int>, bool>? shouldStop = null, Action<int, int>? onToken = null)
    {
        options.Validate();
        var output = prompts.Select(_ => new List<int>()).ToArray();
        if (prompts.Count == 0 || options.MaxNewTokens == 0) return output;
        if (prompts.Any(p => p.Length == 0)) throw new ArgumentException("Every prompt needs at least one token (e.g. BOS).", nameof(prompts));
        bool wasTraining = model.Module.training;
        model.Module.eval();
        Device device = model.Module.parameters().First().device;
        int rows = prompts.Count, width = prompts.Max(p => p.Length);
        var done = new bool[rows];
        var seen = prompts.Select(p => new HashSet<int>(p)).ToArray();

        using var random = new Generator((ulong)options.Seed, device);
        using var noGrad = no_grad();
        using IGenerationCache cache = model.NewCache();
        long[] ids = new long[rows * width], mask = new long[rows * width], positions = new long[rows * width];
        for (int r = 0; r < rows; r++)
        {
            int offset = width - prompts[r].Length;
            for (int t = 0; t < prompts[r].Length; t++)
            {
                ids[r * width + offset + t] = prompts[r][t];
                mask[r * width + offset + t] = 1;
                positions[r * width + offset + t] = t;
            }
            for (int t = 0; t < offset; t++) ids[r * width + t] = padId;
        }
        // The step's inputs live outside the per-step scopes and are replaced (and disposed) at each step.
        Tensor attention = tensor(mask, [rows, width], device: device);
        Tensor next = tensor(ids, [rows, width], device: device);
        Tensor position = tensor(positions, [rows, width], device: device);
        long[] lengths = prompts.Select(p => (long)p.Length).ToArray();
        try
        {
            for (int step = 0; step < options.MaxNewTokens && !done.All(d => d); step++)
            {
                int[] chosen;
                using (NewDisposeScope())
                {
                    Tensor logits = model.Forward(next, attention, position, cache, logitsToKeep: 1).select(1, -1).to(ScalarType.Float32);   // [B, V]
                    chosen = Choose(logits, options, seen, random);
                }
                var nextIds = new long[rows];
                for (int r = 0; r < rows; r++)
                {
                    nextIds[r] = done[r] ? padId : chosen[r];
                    if (done[r]) continue;
                    if (endOfSequence.Contains(chosen[r])) { done[r] = true; continue; }
                    output[r].Add(chosen[r]);
                    seen[r].Add(chosen[r]);
                    onToken?.Invoke(r, chosen[r]);
                    if (shouldStop?.Invoke(r, output[r]) == true) done[r] = true;
                }
                Replace(ref next, tensor(nextIds, [rows, 1], device: device));
                Replace(ref position, tensor(lengths, [rows, 1], device: device));
                for (int r = 0; r < rows; r++) lengths[r]++;
                using (Tensor one = ones(rows, 1, dtype: ScalarType.Int64, device: device)) Replace(ref attention, cat([attention, one], 1));
            }
        }
        finally
        {
            next.Dispose();
            position.Dispose();
            attention.Dispose();
            if (wasTraining) model.Module.train();
        }
        return output;
    }

    private static void Replace(ref Tensor current, Tensor next)
    {
        current.Dispose();
        current = next;
    }

    /// <summary>Next token per row: repetition penalty, then greedy, or temperature + top-k + top-p sampling.</summary>
    private static int[] Choose(Tensor logits, GenerationOptions o, HashSet<int>[] seen, Generator random)
    {
        if (o.RepetitionPenalty != 1)
        {
            var penalty = ones_like(logits);
            for (int r = 0; r < seen.Length; r++)
                if (seen[r].Count > 0) penalty[r].index_fill_(0, tensor(seen[r].Select(i => (long)i).ToArray(), device: logits.device), o.RepetitionPenalty);
            // transformers' rule: divide positive logits, multiply negative ones.
            logits = where(logits.gt(0), logits / penalty, logits * penalty);
        }
        if (o.Temperature == 0) return HostIds(logits.argmax(-1));

        logits = logits / o.Temperature;
        if (o.TopK > 0 && o.TopK < logits.shape[1])
        {
            Tensor kth = logits.topk(o.TopK, -1).values.narrow(1, o.TopK - 1, 1);
            logits = Nn.ScalarArguments.MaskedFill(logits, logits.lt(kth), double.NegativeInfinity);
        }
        if (o.TopP < 1)
        {
            var (sorted, order) = logits.sort(-1, descending: true);
            Tensor cumulative = sorted.softmax(-1).cumsum(-1);
            // Drop a token when the tokens before it already reach p; the most likely token always stays.
            Tensor drop = (cumulative - sorted.softmax(-1)).ge(o.TopP);
            logits = logits.scatter(-1, order, Nn.ScalarArguments.MaskedFill(sorted, drop, double.NegativeInfinity));
        }
        return HostIds(multinomial(logits.softmax(-1), 1, generator: random).squeeze(1));
    }

    // Device memory cannot be read from the host: copy to the CPU first.
    private static int[] HostIds(Tensor ids) => ids.cpu().data<long>().Select(i => (int)i).ToArray();
}
