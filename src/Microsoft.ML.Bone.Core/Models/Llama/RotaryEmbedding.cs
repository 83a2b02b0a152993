using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Models.Llama;

/// <summary>
/// Rotary position embedding in transformers' rotate-half form, with the default, linear, dynamic-NTK and llama3
/// frequency rules. Frequencies and angles are computed in float32 (float64 for the llama3 band logic).
/// </summary>
public static class RotaryEmbedding
{
    /// <summary>Inverse frequencies [head_dim / 2] for a sequence whose largest position is <paramref name="maxPosition"/>.</summary>
    public static double[] InverseFrequencies(LlamaConfig config, long maxPosition = 0)
    {
        int d = config.HeadDim;
        double theta = config.RopeTheta;
        RopeScaling? s = config.RopeScaling;
        if (s is { Type: "dynamic" } && maxPosition + 1 > config.MaxPositionEmbeddings)
        {
            double length = maxPosition + 1;
            theta *= Math.Pow(s.Factor * length / config.MaxPositionEmbeddings - (s.Factor - 1), d / (d - 2.0));
        }
        // transformers computes base ** (arange(0, d, 2) / d) in float32.
        var inv = Enumerable.Range(0, d / 2).Select(i => (double)(1.0f / MathF.Pow((float)theta, (float)(2 * i) / d))).ToArray();
        if (s is { Type: "linear" }) return inv.Select(f => f / s.Factor).ToArray();
        if (s is { Type: "llama3" })
        {
            double lowWavelength = s.OriginalMaxPositionEmbeddings / s.LowFreqFactor, highWavelength = s.OriginalMaxPositionEmbeddings / s.HighFreqFactor;
            return inv.Select(f =>
            {
                double wavelength = 2 * Math.PI / f;
                if (wavelength < highWavelength) return f;
                if (wavelength > lowWavelength) return f / s.Factor;
                double smooth = (s.OriginalMaxPositionEmbeddings / wavelength - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor);
                return (1 - smooth) * f / s.Factor + smooth * f;
            }).ToArray();
        }
        return inv;
    }

    /// <summary>cos and sin [B, 1, T, head_dim] for position ids [B, T], in <paramref name="dtype"/>.</summary>
    public static (Tensor Cos, Tensor Sin) CosSin(LlamaConfig config, Tensor positionIds, ScalarType dtype)
    {
        // Only dynamic NTK depends on the length; reading the largest position costs a device sync, so only then.
        long maxPosition = config.RopeScaling is { Type: "dynamic" } && positionIds.numel() > 0 ? positionIds.max().item<long>() : 0;
        Tensor inv = tensor(InverseFrequencies(config, maxPosition).Select(f => (float)f).ToArray(), device: positionIds.device);
        Tensor angles = positionIds.to(ScalarType.Float32).unsqueeze(-1) * inv;   // [B, T, d/2]
        Tensor emb = cat([angles, angles], -1).unsqueeze(1);                       // [B, 1, T, d]
        return (emb.cos().to(dtype), emb.sin().to(dtype));
    }

    /// <summary>x·cos + rotate_half(x)·sin for x [B, heads, T, d].</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        long half = x.shape[^1] / 2;
        Tensor rotated = cat([-x.narrow(-1, half, half), x.narrow(-1, 0, half)], -1);
        return x * cos + rotated * sin;
    }
}
