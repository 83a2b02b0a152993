using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Nn;

/// <summary>
/// A lookup table, <c>weight</c> [count, dim]. Unlike TorchSharp's <c>nn.Embedding</c>, the table is allocated where
/// <see cref="ParameterPlacement"/> says (TorchSharp allocates it on the CPU first, which a 7B model cannot afford).
/// </summary>
public sealed class Embedding : nn.Module<Tensor, Tensor>
{
    /// <summary>The table, [count, dim].</summary>
    public readonly Parameter weight;

    /// <summary>Creates the table; with <see cref="ParameterPlacement.Initialize"/>, entries are N(0, <paramref name="std"/>).</summary>
    public Embedding(long count, long dim, ParameterPlacement placement, double std = 1.0) : base(nameof(Embedding))
    {
        weight = new Parameter(placement.Empty(count, dim));
        if (placement.Initialize)
            using (no_grad()) nn.init.normal_(weight, 0, std);
        RegisterComponents();
    }

    /// <summary>Rows of the table for ids of any shape: [..., dim].</summary>
    public override Tensor forward(Tensor ids) => weight.index_select(0, ids.reshape(-1)).view([.. ids.shape, weight.shape[1]]);
}
