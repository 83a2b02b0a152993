using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Nn;

/// <summary>LayerNorm over the last dimension with <c>weight</c> and <c>bias</c>, allocated where <see cref="ParameterPlacement"/> says.</summary>
public sealed class LayerNorm : nn.Module<Tensor, Tensor>
{
    /// <summary>Gain, [size].</summary>
    public readonly Parameter weight;

    /// <summary>Shift, [size].</summary>
    public readonly Parameter bias;

    private readonly double _eps;

    /// <summary>Creates the norm (unit gain, zero shift when initialised).</summary>
    public LayerNorm(long size, double eps, ParameterPlacement placement) : base(nameof(LayerNorm))
    {
        weight = new Parameter(placement.Empty(size));
        bias = new Parameter(placement.Empty(size));
        if (placement.Initialize)
            using (no_grad())
            {
                weight.fill_(1);
                bias.zero_();
            }
        _eps = eps;
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x) => nn.functional.layer_norm(x, [weight.shape[0]], weight, bias, _eps);
}
