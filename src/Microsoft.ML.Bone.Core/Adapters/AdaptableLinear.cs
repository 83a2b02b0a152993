using Microsoft.ML.Bone.Nn;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Adapters;

/// <summary>
/// A linear layer (<c>y = x·Wᵀ + b</c>, weight stored [out, in] as in PyTorch) that can carry one adapter.
/// Models use it wherever PEFT could target an <c>nn.Linear</c>; its parameters are named <c>weight</c> and
/// <c>bias</c>, so checkpoints load by name.
/// </summary>
public sealed class AdaptableLinear : nn.Module<Tensor, Tensor>
{
    /// <summary>The frozen (or fully trained) base weight, [out_features, in_features].</summary>
    public Parameter weight;

    /// <summary>The base bias, [out_features], or null.</summary>
    public Parameter? bias;

    /// <summary>
    /// Creates the layer where <paramref name="placement"/> says. When it initialises, weights get PyTorch's default
    /// <c>nn.Linear</c> initialisation, or N(0, <paramref name="std"/>) with zero bias when <paramref name="std"/> is
    /// given (transformers' <c>initializer_range</c>).
    /// </summary>
    public AdaptableLinear(long inFeatures, long outFeatures, bool hasBias = true, ParameterPlacement? placement = null, double? std = null)
        : base(nameof(AdaptableLinear))
    {
        placement ??= ParameterPlacement.Default;
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        weight = new Parameter(placement.Empty(outFeatures, inFeatures));
        if (hasBias) bias = new Parameter(placement.Empty(outFeatures));
        if (placement.Initialize)
        {
            using var noGrad = no_grad();
            if (std is { } s)
            {
                nn.init.normal_(weight, 0, s);
                if (bias is not null) nn.init.zeros_(bias);
            }
            else
            {
                nn.init.kaiming_uniform_(weight, a: Math.Sqrt(5));
                double bound = inFeatures > 0 ? 1 / Math.Sqrt(inFeatures) : 0;
                if (bias is not null) nn.init.uniform_(bias, -bound, bound);
            }
        }
        RegisterComponents();
    }

    /// <summary>Number of input features.</summary>
    public long InFeatures { get; }

    /// <summary>Number of output features.</summary>
    public long OutFeatures { get; }

    /// <summary>The attached adapter, or null.</summary>
    public LayerAdapter? Adapter { get; private set; }

    /// <summary>True while the adapter's update is folded into <see cref="weight"/>.</summary>
    public bool Merged { get; private set; }

    /// <summary>When false, the layer computes the base linear map only (the adapter is kept).</summary>
    public bool AdapterEnabled { get; set; } = true;

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        if (Adapter is null || Merged || !AdapterEnabled)
        {
            if (Merged && !AdapterEnabled) Unmerge();
            return nn.functional.linear(input, weight, bias);
        }
        return Adapter.Forward(input, this);
    }

    /// <summary>Attaches <paramref name="adapter"/>; it is registered as the child module <c>adapter</c>.</summary>
    public void Attach(LayerAdapter adapter)
    {
        if (Adapter is not null) throw new InvalidOperationException($"Layer '{adapter.ModulePath}' already has an adapter.");
        Adapter = adapter;
        register_module("adapter", adapter);
    }

    /// <summary>Removes the adapter without merging it.</summary>
    public LayerAdapter? Detach()
    {
        if (Merged) throw new InvalidOperationException($"Layer '{Adapter?.ModulePath}' is merged; unmerge before detaching, or use MergeAndUnload.");
        LayerAdapter? adapter = Adapter;
        if (adapter is null) return null;
        register_module("adapter", null!);
        Adapter = null;
        return adapter;
    }

    /// <summary>
    /// Folds the adapter into <see cref="weight"/>. With <paramref name="safe"/> the merged weight is built in a copy
    /// and checked for NaN / infinity before the live weight is touched.
    /// </summary>
    public void Merge(bool safe = false)
    {
        if (Adapter is null || Merged) return;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        Tensor merged = Adapter.MergedWeight(weight.detach().to(ScalarType.Float32));
        if (safe && !isfinite(merged).all().item<bool>())
            throw new InvalidOperationException($"NaNs or infinities detected in the merged weight of '{Adapter.ModulePath}'; the adapter seems to be broken. The base weight was left unchanged.");
        weight.copy_(merged.to(weight.dtype));
        Merged = true;
    }

    /// <summary>Restores the base weight from the merged one (Bat through the inverse of I + B).</summary>
    public void Unmerge()
    {
        if (Adapter is null || !Merged) return;
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        Tensor restored = Adapter.UnmergedWeight(weight.detach().to(ScalarType.Float32));
        weight.copy_(restored.to(weight.dtype));
        Merged = false;
    }

    /// <summary>Merges the adapter for good and removes it; the layer becomes a plain linear layer.</summary>
    public void MergeAndUnload(bool safe = false)
    {
        Merge(safe);
        Merged = false;
        Detach();
    }
}
