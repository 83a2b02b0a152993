using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Models.Rwkv6;

/// <summary>How the WKV-6 recurrence is evaluated.</summary>
public enum WkvImplementation
{
    /// <summary>Chunked for sequences, recurrent for single tokens (the default).</summary>
    Auto,

    /// <summary>The chunked parallel form: matrix products within chunks, one state update per chunk.</summary>
    Chunked,

    /// <summary>The per-token recurrence, the form the kernels of RWKV-LM and rwkv.cpp run.</summary>
    Recurrent,
}

/// <summary>
/// The WKV-6 operator of RWKV-6 ("Finch"), per head h with state S ∈ ℝ^{N×N} indexed [key i][value j]:
/// y_t[j] = Σ_i r_t[i]·(u[i]·k_t[i]·v_t[j] + S[i][j]), then S[i][j] ← w_t[i]·S[i][j] + k_t[i]·v_t[j], with the
/// data-dependent decay w_t = exp(log w_t) ∈ (0, 1). Inputs are [B, T, H, N]; <c>logW</c> is log w (≤ 0); the
/// state is [B, H, N, N] and is always float32, whatever the model's dtype.
/// </summary>
public static class Wkv6
{
    /// <summary>Chunk length of the parallel form; the intra-chunk term needs a [L, L, N] tensor per head and chunk.</summary>
    public const int DefaultChunkLength = 16;

    /// <summary>Outputs [B, T, H, N] and the state after the last token, by <paramref name="implementation"/>.</summary>
    public static (Tensor Output, Tensor State) Run(Tensor r, Tensor k, Tensor v, Tensor logW, Tensor u, Tensor state, WkvImplementation implementation = WkvImplementation.Auto) =>
        implementation == WkvImplementation.Recurrent || (implementation == WkvImplementation.Auto && r.shape[1] <= 2)
            ? Recurrent(r, k, v, logW, u, state)
            : Chunked(r, k, v, logW, u, state);

    /// <summary>Token by token: the reference form, and the cheapest for generation (one token per call).</summary>
    public static (Tensor Output, Tensor State) Recurrent(Tensor r, Tensor k, Tensor v, Tensor logW, Tensor u, Tensor state)
    {
        long t = r.shape[1];
        Tensor s = state.to(ScalarType.Float32);
        Tensor uk = u.to(ScalarType.Float32).unsqueeze(-1);                                      // [H, N, 1]
        var outputs = new List<Tensor>((int)t);
        for (long i = 0; i < t; i++)
        {
            Tensor ri = r.select(1, i).to(ScalarType.Float32), ki = k.select(1, i).to(ScalarType.Float32), vi = v.select(1, i).to(ScalarType.Float32);
            Tensor kv = ki.unsqueeze(-1) * vi.unsqueeze(-2);                                      // [B, H, N, N]
            outputs.Add(ri.unsqueeze(-2).matmul(s + uk * kv).squeeze(-2));                          // [B, H, N]
            s = logW.select(1, i).to(ScalarType.Float32).exp().unsqueeze(-1) * s + kv;
        }
        return (stack(outputs, 1), s);
    }

    /// <summary>
    /// The exact chunked form. Within a chunk of length L, with c_a = Σ_{b≤a} log w_b (≤ 0) per key channel and S
    /// the state at the chunk start: y_a = (r_a ⊙ exp(c_{a−1}))ᵀS + Σ_{s&lt;a} [Σ_i r_a[i] k_s[i] exp(c_{a−1}[i] − c_s[i])] v_s
    /// + (Σ_i r_a[i] u[i] k_a[i]) v_a, and S ← diag(exp(c_{L−1})) S + Σ_s (k_s ⊙ exp(c_{L−1} − c_s)) v_sᵀ. Every exponent
    /// is ≤ 0, so nothing overflows however strong the decay; everything but the state hand-over between chunks runs
    /// for all chunks at once.
    /// </summary>
    public static (Tensor Output, Tensor State) Chunked(Tensor r, Tensor k, Tensor v, Tensor logW, Tensor u, Tensor state, int chunkLength = DefaultChunkLength)
    {
        long b = r.shape[0], t = r.shape[1], h = r.shape[2], n = r.shape[3];
        long l = Math.Min(chunkLength, t), chunks = (t + l - 1) / l, padded = chunks * l;
        // [B, H, C, L, N] in float32; padding tokens (r = k = v = 0, no decay) change neither outputs nor state.
        Tensor Blocks(Tensor x)
        {
            x = x.to(ScalarType.Float32).permute(0, 2, 1, 3);
            if (padded > t) x = nn.functional.pad(x, [0, 0, 0, padded - t]);
            return x.reshape(b, h, chunks, l, n);
        }
        Tensor rb = Blocks(r), kb = Blocks(k), vb = Blocks(v), wb = Blocks(logW);
        Tensor c = wb.cumsum(3);                                                                  // inclusive, ≤ 0
        Tensor before = c - wb;                                                                   // c_{a−1}

        // Intra-chunk: exp(c_{a−1} − c_s) for s < a, -inf elsewhere before the exponential so nothing overflows.
        Tensor strictlyLower = ones(l, l, dtype: ScalarType.Bool, device: r.device).tril(-1).unsqueeze(-1);   // [L, L, 1]
        Tensor exponent = Nn.ScalarArguments.MaskedFill(before.unsqueeze(4) - c.unsqueeze(3), strictlyLower.logical_not(), double.NegativeInfinity);  // [B, H, C, L, L, N]
        Tensor scores = (rb.unsqueeze(4) * kb.unsqueeze(3) * exponent.exp()).sum(-1);              // [B, H, C, L, L]
        Tensor bonus = (rb * u.to(ScalarType.Float32).view(1, h, 1, 1, n) * kb).sum(-1);            // [B, H, C, L]
        Tensor y = (scores + bonus.diag_embed()).matmul(vb);                                       // [B, H, C, L, N]

        // What each chunk adds to the state, and how it decays a state passing through.
        Tensor last = c.narrow(3, l - 1, 1);                                                      // [B, H, C, 1, N]
        Tensor contribution = (kb * (last - c).exp()).transpose(3, 4).matmul(vb);                  // [B, H, C, N, N]
        Tensor decay = last.squeeze(3).exp().unsqueeze(-1);                                        // [B, H, C, N, 1]
        Tensor s = state.to(ScalarType.Float32);
        var starts = new List<Tensor>((int)chunks);
        for (long i = 0; i < chunks; i++)
        {
            starts.Add(s);
            s = decay.select(2, i) * s + contribution.select(2, i);
        }
        y = y + (rb * before.exp()).matmul(stack(starts, 2));                                      // inter-chunk
        Tensor output = y.reshape(b, h, padded, n).narrow(2, 0, t).permute(0, 2, 1, 3);            // [B, T, H, N]
        return (output, s);
    }
}
