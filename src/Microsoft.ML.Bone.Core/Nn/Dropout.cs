using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Nn;

/// <summary>
/// Inverted dropout in training mode, identity in eval mode. Masks come from <see cref="Random"/> when it is set
/// (the trainers always set one per run), otherwise from torch's global generator.
/// </summary>
public sealed class Dropout : nn.Module<Tensor, Tensor>
{
    /// <summary>Creates a layer that zeroes each element with probability <paramref name="p"/>.</summary>
    public Dropout(double p) : base(nameof(Dropout))
    {
        if (p is < 0 or >= 1) throw new ArgumentOutOfRangeException(nameof(p), p, "dropout probability must be in [0, 1)");
        P = p;
    }

    /// <summary>The drop probability.</summary>
    public double P { get; }

    /// <summary>The stream masks are drawn from; null means torch's global generator.</summary>
    public RandomSource? Random { get; set; }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        if (!training || P == 0) return x;
        if (Random is null) return nn.functional.dropout(x, P, training: true);
        using Tensor keep = rand(x.shape, dtype: ScalarType.Float32, device: x.device, generator: Random.For(x.device)).ge_(P);
        return x * keep.to(x.dtype) * (1 / (1 - P));
    }
}
