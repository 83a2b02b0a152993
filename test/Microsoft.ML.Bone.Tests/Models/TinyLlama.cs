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
            foreach (var (_, p) in model.named_parameters())
                p.copy_(p.ndim == 1 ? 1 + 0.1 * randn(p.shape, generator: generator) : randn(p.shape, generator: generator) * 0.3);
        model.eval();
        return model;
    }

    /// <summary>
    /// Logits [B, T, V] from the state dict, written from the spec: RMSNorm formula, rotate-half RoPE from
    /// <paramref name="inverseFrequencies"/>, kv head h / (heads / kv_heads) by explicit indexing, causal and padding
    /// masks, SiLU-gated MLP.
    /// </summary>
    public static Tensor Reference(IReadOnlyDictionary<string, Tensor> sd, LlamaConfig c, long[,] ids, long[,]? positions = null, bool[,]? padding = null, Func<string, Tensor>? weight = null, double[]? inverseFrequencies = null)
    {
        Tensor W(string name) => (weight?.Invoke(name) ?? sd[name]).to(ScalarType.Float64);
        Tensor Norm(Tensor x, string gain) => x / (x.pow(2).mean([-1], keepdim: true) + c.RmsNormEps).sqrt() * W(gain);
        int b = ids.GetLength(0), t = ids.GetLength(1), hd = c.HeadDim;
        double[] inv = inverseFrequencies ?? Enumerable.Range(0, hd / 2).Select(i => 1 / Math.Pow(c.RopeTheta, 2.0 * i / hd)).ToArray();

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
        var blocked = new bool[b, 1, t, t];
        for (int n = 0; n < b; n++) for (int i = 0; i < t; i++) for (int j = 0; j < t; j++) blocked[n, 0, i, j] = j > i || (padding?[n, j] ?? false);
        Tensor blockedT = tensor(blocked.Cast<bool>().ToArray(), [b, 1, t, t]);

        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"model.layers.{l}.";
            Tensor h = Norm(x, p + "input_layernorm.weight");
            Tensor q = Rope(h.matmul(W(p + "self_attn.q_proj.weight").t()).reshape(b, t, c.NumAttentionHeads, hd).permute(0, 2, 1, 3));
            Tensor k = Rope(h.matmul(W(p + "self_attn.k_proj.weight").t()).reshape(b, t, c.NumKeyValueHeads, hd).permute(0, 2, 1, 3));
            Tensor v = h.matmul(W(p + "self_attn.v_proj.weight").t()).reshape(b, t, c.NumKeyValueHeads, hd).permute(0, 2, 1, 3);
            int group = c.NumAttentionHeads / c.NumKeyValueHeads;
            Tensor kvIndex = tensor(Enumerable.Range(0, c.NumAttentionHeads).Select(head => (long)(head / group)).ToArray());
            k = k.index_select(1, kvIndex);
            v = v.index_select(1, kvIndex);
            Tensor scores = (q.matmul(k.transpose(2, 3)) / Math.Sqrt(hd)).masked_fill(blockedT, double.NegativeInfinity);
            Tensor attended = scores.softmax(-1).nan_to_num().matmul(v).permute(0, 2, 1, 3).reshape(b, t, c.NumAttentionHeads * hd);
            x = x + attended.matmul(W(p + "self_attn.o_proj.weight").t());
            Tensor m = Norm(x, p + "post_attention_layernorm.weight");
            Tensor gate = m.matmul(W(p + "mlp.gate_proj.weight").t());
            x = x + (gate * gate.sigmoid() * m.matmul(W(p + "mlp.up_proj.weight").t())).matmul(W(p + "mlp.down_proj.weight").t());
        }
        x = Norm(x, "model.norm.weight");
        return x.matmul(W(c.TieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight").t());
    }
}
