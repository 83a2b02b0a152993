using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Adapters.Lora;

/// <summary>LoRA initialisations: PEFT's default and Gaussian, PiSSA (exact or randomized SVD) and OLoRA (QR).</summary>
internal static class LoraInitializer
{
    public static void Initialize(LoraLayer lora, AdaptableLinear layer, LoraConfig config, Generator? random)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        switch (config.Init)
        {
            case LoraInit.Default:
                Nn.Initialize.KaimingUniform(lora.lora_A.weight, random);
                nn.init.zeros_(lora.lora_B.weight);
                return;
            case LoraInit.Gaussian:
                Nn.Initialize.Normal(lora.lora_A.weight, 1.0 / config.R, random);
                nn.init.zeros_(lora.lora_B.weight);
                return;
        }

        Tensor w = layer.weight.detach().to(ScalarType.Float32);
        long r = config.R;
        if (r > Math.Min(layer.InFeatures, layer.OutFeatures))
            throw new ArgumentException($"{config.Init} on '{lora.ModulePath}': r = {r} exceeds min(out, in) = {Math.Min(layer.InFeatures, layer.OutFeatures)}.");

        Tensor a, b;
        if (config.Init == LoraInit.PiSSA)
        {
            var (u, s, vh) = config.PissaIterations > 0 ? RandomizedSvd(w, r, config.PissaIterations, random) : TopSvd(w, r);
            // PEFT divides the singular values by scale so that scale·B·A is the rank-r part of W.
            Tensor root = (s / config.Scale).sqrt();
            a = root.unsqueeze(1) * vh;  // (r, in)
            b = u * root.unsqueeze(0);   // (out, r)
        }
        else
        {
            var (q, rr) = linalg.qr(w);
            a = rr.narrow(0, 0, r);
            b = q.narrow(1, 0, r);
        }
        lora.lora_A.weight.copy_(a);
        lora.lora_B.weight.copy_(b);
        // The base becomes the residual only when the whole injection has succeeded (LoraLayer.Commit).
        lora.PendingResidual = (a.DetachFromDisposeScope(), b.DetachFromDisposeScope());
    }

    /// <summary>W ← W − scale·B₀·A₀ and remembers A₀, B₀; the same arithmetic at initialisation and when a saved model is restored.</summary>
    public static void ApplyResidual(LoraLayer lora, AdaptableLinear layer, Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        Tensor w = layer.weight.detach().to(ScalarType.Float32);
        layer.weight.copy_((w - lora.Scale * b.matmul(a)).to(layer.weight.dtype));
        lora.InitialFactors = (a.clone().DetachFromDisposeScope(), b.clone().DetachFromDisposeScope());
    }

    private static (Tensor U, Tensor S, Tensor Vh) TopSvd(Tensor w, long r)
    {
        var (u, s, vh) = linalg.svd(w, fullMatrices: false);
        return (u.narrow(1, 0, r), s.narrow(0, 0, r), vh.narrow(0, 0, r));
    }

    /// <summary>
    /// Randomized SVD (Halko, Martinsson and Tropp 2011): a Gaussian sketch of the range of W, refined by
    /// <paramref name="iterations"/> power iterations with re-orthonormalisation, then an exact SVD of the small
    /// projected matrix. Costs O(out·in·r) instead of the full SVD's O(out·in·min(out, in)).
    /// </summary>
    public static (Tensor U, Tensor S, Tensor Vh) RandomizedSvd(Tensor w, long r, int iterations, Generator? random = null)
    {
        long oversampled = Math.Min(r + 10, Math.Min(w.shape[0], w.shape[1]));
        Tensor sketch = (random is null ? randn([w.shape[1], oversampled], dtype: ScalarType.Float32) : randn([w.shape[1], oversampled], dtype: ScalarType.Float32, generator: random)).to(w.dtype, w.device);
        Tensor q = linalg.qr(w.matmul(sketch)).Q;
        for (int i = 0; i < iterations; i++)
        {
            Tensor z = linalg.qr(w.t().matmul(q)).Q;
            q = linalg.qr(w.matmul(z)).Q;
        }
        var (ub, s, vh) = linalg.svd(q.t().matmul(w), fullMatrices: false);
        return (q.matmul(ub).narrow(1, 0, r), s.narrow(0, 0, r), vh.narrow(0, 0, r));
    }
}
