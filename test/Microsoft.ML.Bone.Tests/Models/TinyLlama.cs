using Microsoft.ML.Bone.Models.Llama;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.Models;

/// <summary>A tiny LLaMA with random weights, and an independent forward pass in plain tensor algebra.</summary>
internal static class TinyLlama
{
    public static LlamaConfig Config(RopeScaling? scaling = null, bool tied = false) => new()
    {
        VocabSize = 40, HiddenSize = 16, IntermediateSize = 24, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2,
        HeadDim = 4, MaxPositionEmbeddings = 16, RmsNormEps = 1e-5, RopeTheta = 500, RopeScaling = scaling, TieWordEmbeddings = tied,
    };

    /// <summary>Random weights from a private generator (reproducible while other tests use the global one); gains near 1.</summary>
    public static LlamaForCausalLM Create(LlamaConfig config, int seed = 1)
    {
        var model = new LlamaForCausalLM(config);
        var generator = new torch.Generator((ulong)seed);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                p.copy_(name.EndsWith(".bias", StringComparison.Ordinal) ? 0.2 * randn(p.shape, generator: generator)
                    : p.ndim == 1 ? 1 + 0.1 * randn(p.shape, generator: generator) : randn(p.shape, generator: generator) * 0.3);
        model.eval();
        return model;
    }

    /// <summary>
    /// Rotary inverse frequencies written from the spec in float64, independently of the implementation:
    /// 1/θ^(2i/d), divided by the factor for "linear", and llama3's three frequency bands.
    /// </summary>
    public static double[] ReferenceFrequencies(LlamaConfig c)
    {
        int d = c.HeadDim;
        var inv = Enumerable.Range(0, d / 2).Select(i => 1 / Math.Pow(c.RopeTheta, 2.0 * i / d)).ToArray();
        switch (c.RopeScaling)
        {
            case { Type: "linear" } s:
                return inv.Select(f => f / s.Factor).ToArray();
            case { Type: "llama3" } s:
                return inv.Select(f =>
                {
                    double wavelength = 2 * Math.PI / f, low = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor, high = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
                    if (wavelength < high) return f;
                    if (wavelength > low) return f / s.Factor;
                    double smooth = (s.OriginalMaxPositionEmbeddings / wavelength - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                    return (1 - smooth) * f / s.Factor + smooth * f;
                }).ToArray();
            default:
                return inv;
        }
    }

    /// <summary>
    /// Logits [B, T, V] from the state dict, written from the spec: RMSNorm formula, rotate-half RoPE with
    /// <see cref="ReferenceFrequencies"/>, q/k/v/o biases when the state dict has them, kv head h / (heads / kv_heads)
    /// by explicit indexing, causal and padding masks, a sliding window per layer (<paramref name="windows"/>: query i
    /// sees keys j with i − j &lt; window), SiLU-gated MLP.
    /// </summary>
    public static Tensor Reference(IReadOnlyDictionary<string, Tensor> sd, LlamaConfig c, long[,] ids, long[,]? positions = null, bool[,]? padding = null, Func<string, Tensor>? weight = null, int?[]? windows = null)
    {
        Tensor W(string name) => (weight?.Invoke(name) ?? sd[name]).to(ScalarType.Float64);
        Tensor Linear(Tensor x, string name) => sd.ContainsKey(name + ".bias") ? x.matmul(W(name + ".weight").t()) + W(name + ".bias") : x.matmul(W(name + ".weight").t());
        Tensor Norm(Tensor x, string gain) => x / (x.pow(2).mean([-1], keepdim: true) + c.RmsNormEps).sqrt() * W(gain);
        int b = ids.GetLength(0), t = ids.GetLength(1), hd = c.HeadDim;
        double[] inv = ReferenceFrequencies(c);

        Tensor x = W("model.embed_tokens.weight").index_select(0, tensor(ids.Cast<long>().ToArray())).reshape(b, t, c.HiddenSize);
        var cos = new double[b, t, hd];
        var sin = new double[b, t, hd];
        for (int n = 0; n < b; n++)
            for (int p = 0; p < t; p++)
                for (int i = 0; i < hd; i++)
                {
                    double angle = (positions?[n, p] ?? p) * inv[i % (hd / 2)];
                    cos[n, p, i] = Math.Cos(angle);
                    sin[n, p, i] = Math.Sin(angle);
                }
        Tensor cosT = tensor(cos.Cast<double>().ToArray(), [b, 1, t, hd]), sinT = tensor(sin.Cast<double>().ToArray(), [b, 1, t, hd]);
        Tensor Rope(Tensor v) => v * cosT + cat([-v.narrow(-1, hd / 2, hd / 2), v.narrow(-1, 0, hd / 2)], -1) * sinT;

        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            var blocked = new bool[b, 1, t, t];
            int? window = windows?[l];
            for (int n = 0; n < b; n++) for (int i = 0; i < t; i++) for (int j = 0; j < t; j++)
                blocked[n, 0, i, j] = j > i || (padding?[n, j] ?? false) || (window is { } w && i - j >= w);
            Tensor blockedT = tensor(blocked.Cast<bool>().ToArray(), [b, 1, t, t]);
            string p = $"model.layers.{l}.";
            Tensor h = Norm(x, p + "input_layernorm.weight");
            Tensor q = Rope(Linear(h, p + "self_attn.q_proj").reshape(b, t, c.NumAttentionHeads, hd).permute(0, 2, 1, 3));
            Tensor k = Rope(Linear(h, p + "self_attn.k_proj").reshape(b, t, c.NumKeyValueHeads, hd).permute(0, 2, 1, 3));
            Tensor v = Linear(h, p + "self_attn.v_proj").reshape(b, t, c.NumKeyValueHeads, hd).permute(0, 2, 1, 3);
            int group = c.NumAttentionHeads / c.NumKeyValueHeads;
            Tensor kvIndex = tensor(Enumerable.Range(0, c.NumAttentionHeads).Select(head => (long)(head / group)).ToArray());
            k = k.index_select(1, kvIndex);
            v = v.index_select(1, kvIndex);
            Tensor scores = (q.matmul(k.transpose(2, 3)) / Math.Sqrt(hd)).masked_fill(blockedT, double.NegativeInfinity);
            Tensor attended = scores.softmax(-1).nan_to_num().matmul(v).permute(0, 2, 1, 3).reshape(b, t, c.NumAttentionHeads * hd);
            x = x + Linear(attended, p + "self_attn.o_proj");
            Tensor m = Norm(x, p + "post_attention_layernorm.weight");
            Tensor gate = Linear(m, p + "mlp.gate_proj");
            x = x + Linear(gate * gate.sigmoid() * Linear(m, p + "mlp.up_proj"), p + "mlp.down_proj");
        }
        x = Norm(x, "model.norm.weight");
        return x.matmul(W(c.TieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight").t());
    }
}
