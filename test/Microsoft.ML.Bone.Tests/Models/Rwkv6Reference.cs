using Microsoft.ML.Bone.Tests.IO;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.Models;

/// <summary>
/// RWKV-6 written once more, from the published recurrence (rwkv.cpp's README pseudo-code, one token at a time, float64),
/// over weights read by the tests' own safetensors reader under BlinkDL names. Nothing here uses the product's model,
/// loaders or WKV code.
/// </summary>
internal sealed class Rwkv6Reference
{
    private readonly Dictionary<string, Tensor> _w;
    private readonly int _layers, _heads, _headSize;

    private Rwkv6Reference(Dictionary<string, Tensor> weights)
    {
        _w = weights;
        _layers = Enumerable.Range(0, 1000).TakeWhile(i => _w.ContainsKey($"blocks.{i}.ln1.weight")).Count();
        _heads = (int)_w["blocks.0.att.time_faaaa"].shape[0];
        _headSize = (int)_w["blocks.0.att.time_faaaa"].shape[1];
    }

    /// <summary>Reads a Hugging Face RWKV6 safetensors file (F32) and renames back to BlinkDL names.</summary>
    public static Rwkv6Reference FromHfSafetensors(string path)
    {
        var (header, _) = HandWrittenSafetensors.ReadHeader(path);
        var weights = new Dictionary<string, Tensor>();
        foreach (var entry in header.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__"))
        {
            long[] shape = entry.Value.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray();
            string name = entry.Name == "rwkv.embeddings.weight" ? "emb.weight"
                : entry.Name == "head.weight" ? "head.weight"
                : entry.Name["rwkv.".Length..].Replace(".attention.", ".att.").Replace(".feed_forward.", ".ffn.").Replace("blocks.0.pre_ln.", "blocks.0.ln0.");
            // Kept for the whole test run: outside any test's dispose scope.
            weights[name] = tensor(HandWrittenSafetensors.ReadF32(path, entry.Name).Select(f => (double)f).ToArray(), dtype: ScalarType.Float64).reshape(shape).DetachFromDisposeScope();
        }
        return new Rwkv6Reference(weights);
    }

    /// <summary>Per-layer state: att shift, ffn shift ([C]) and WKV [H, N(key), N(value)].</summary>
    public sealed class State(int layers)
    {
        public Tensor?[] Att = new Tensor?[layers], Ffn = new Tensor?[layers], Wkv = new Tensor?[layers];
    }

    public State NewState() => new(_layers);

    private Tensor W(string name) => _w[name];

    private static Tensor LayerNorm(Tensor x, Tensor weight, Tensor bias, double eps)
    {
        Tensor mean = x.mean([-1], keepdim: true);
        Tensor variance = (x - mean).square().mean([-1], keepdim: true);
        return (x - mean) / (variance + eps).sqrt() * weight + bias;
    }

    /// <summary>Logits [V] (float64) for one token, updating <paramref name="state"/>.</summary>
    public Tensor Step(long token, State state)
    {
        long c = W("emb.weight").shape[1];
        Tensor x = W("emb.weight")[token];
        x = LayerNorm(x, W("blocks.0.ln0.weight"), W("blocks.0.ln0.bias"), 1e-5);
        for (int i = 0; i < _layers; i++)
        {
            string p = $"blocks.{i}.";
            Tensor xx = LayerNorm(x, W(p + "ln1.weight"), W(p + "ln1.bias"), 1e-5);
            Tensor sx = (state.Att[i] ?? zeros(c, dtype: ScalarType.Float64)) - xx;
            state.Att[i] = xx;
            Tensor xxx = xx + sx * W(p + "att.time_maa_x").reshape(-1);
            Tensor m = xxx.matmul(W(p + "att.time_maa_w1")).tanh().reshape(5, -1);       // [5, Dm]
            Tensor[] mix = Enumerable.Range(0, 5).Select(f => m[f].matmul(W(p + "att.time_maa_w2")[f])).ToArray();  // w, k, v, r, g
            Tensor Lerp(string name, Tensor extra) => xx + sx * (W(p + "att." + name).reshape(-1) + extra);
            Tensor xw = Lerp("time_maa_w", mix[0]), xk = Lerp("time_maa_k", mix[1]), xv = Lerp("time_maa_v", mix[2]), xr = Lerp("time_maa_r", mix[3]), xg = Lerp("time_maa_g", mix[4]);
            Tensor r = W(p + "att.receptance.weight").matmul(xr), k = W(p + "att.key.weight").matmul(xk), v = W(p + "att.value.weight").matmul(xv);
            Tensor gl = W(p + "att.gate.weight").matmul(xg), g = gl * gl.sigmoid();
            Tensor w = (-(W(p + "att.time_decay").reshape(-1) + xw.matmul(W(p + "att.time_decay_w1")).tanh().matmul(W(p + "att.time_decay_w2"))).exp()).exp();
            Tensor u = W(p + "att.time_faaaa");
            Tensor s = state.Wkv[i] ?? zeros([_heads, _headSize, _headSize], dtype: ScalarType.Float64);
            var y = new List<Tensor>();
            var next = new List<Tensor>();
            for (int h = 0; h < _heads; h++)
            {
                Tensor rh = r.narrow(0, h * _headSize, _headSize), kh = k.narrow(0, h * _headSize, _headSize), vh = v.narrow(0, h * _headSize, _headSize);
                Tensor kv = kh.unsqueeze(1) * vh.unsqueeze(0);                                   // [i, j]
                y.Add((rh.unsqueeze(1) * (u[h].unsqueeze(1) * kv + s[h])).sum([0]));             // Σ_i
                next.Add(w.narrow(0, h * _headSize, _headSize).unsqueeze(1) * s[h] + kv);
            }
            state.Wkv[i] = stack(next);
            // GroupNorm, one group per head, eps 64e-5, then ln_x's affine.
            Tensor yh = stack(y);                                                               // [H, N]
            Tensor mean = yh.mean([-1], keepdim: true), variance = (yh - mean).square().mean([-1], keepdim: true);
            Tensor normed = ((yh - mean) / (variance + 64e-5).sqrt()).reshape(-1) * W(p + "att.ln_x.weight") + W(p + "att.ln_x.bias");
            x = x + W(p + "att.output.weight").matmul(normed * g);

            Tensor xf = LayerNorm(x, W(p + "ln2.weight"), W(p + "ln2.bias"), 1e-5);
            Tensor sf = (state.Ffn[i] ?? zeros(c, dtype: ScalarType.Float64)) - xf;
            state.Ffn[i] = xf;
            Tensor fk = xf + sf * W(p + "ffn.time_maa_k").reshape(-1), fr = xf + sf * W(p + "ffn.time_maa_r").reshape(-1);
            Tensor kk = W(p + "ffn.key.weight").matmul(fk).relu().square();
            x = x + W(p + "ffn.receptance.weight").matmul(fr).sigmoid() * W(p + "ffn.value.weight").matmul(kk);
        }
        return W("head.weight").matmul(LayerNorm(x, W("ln_out.weight"), W("ln_out.bias"), 1e-5));
    }

    /// <summary>Logits [T, V] for a sequence from the zero state.</summary>
    public Tensor Sequence(IReadOnlyList<long> tokens)
    {
        var state = NewState();
        return stack(tokens.Select(t => Step(t, state)).ToList());
    }
}
