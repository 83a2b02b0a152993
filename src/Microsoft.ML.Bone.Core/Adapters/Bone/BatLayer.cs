using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Adapters.Bone;

/// <summary>
/// Bat on one linear layer: trainable <c>miss_block</c> of r×r blocks; the layer runs in float32 on
/// W' = W + ΔW(W, B), as PEFT does.
/// </summary>
public sealed class BatLayer : LayerAdapter
{
    /// <summary>The trainable blocks, (out/r, r, r) for output grouping or (in/r, r, r) for input grouping, float32.</summary>
    public Parameter miss_block;

    /// <summary>Creates zero blocks for <paramref name="layer"/>; throws unless r divides both dimensions.</summary>
    public BatLayer(string modulePath, AdaptableLinear layer, int r, BatGrouping grouping, BatProduct product, bool gradientCheckpointing)
        : base(nameof(BatLayer), modulePath)
    {
        BatMath.CheckDivisible(layer.OutFeatures, layer.InFeatures, r, modulePath);
        Grouping = grouping;
        Product = product;
        GradientCheckpointing = gradientCheckpointing;
        miss_block = new Parameter(zeros(BatMath.BlockShape(layer.OutFeatures, layer.InFeatures, r, grouping), dtype: ScalarType.Float32, device: layer.weight.device));
        RegisterComponents();
    }

    /// <summary>Bat transforms the weight (W' = W + W·B + B), so several adapters compose rather than add.</summary>
    public override bool IsAdditive => false;

    /// <summary>Which block index selects B.</summary>
    public BatGrouping Grouping { get; }

    /// <summary>Matrix or Hadamard product.</summary>
    public BatProduct Product { get; }

    /// <summary>Whether W' is recomputed in the backward pass instead of being kept.</summary>
    public bool GradientCheckpointing { get; set; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input, AdaptableLinear layer)
    {
        ScalarType dtype = input.dtype;
        Tensor x = AsFloat32(input);
        Tensor w = layer.weight.detach().to(ScalarType.Float32);
        Tensor? b = layer.bias?.to(ScalarType.Float32);
        Tensor y = GradientCheckpointing && is_grad_enabled()
            ? BatCheckpointedLinear.apply(x, w, miss_block, b, Grouping, Product)
            : nn.functional.linear(x, BatMath.MergedWeight(w, miss_block, Grouping, Product), b);
        return y.to(dtype);
    }

    /// <inheritdoc/>
    public override Tensor DeltaWeight(Tensor weight) => BatMath.DeltaWeight(weight, miss_block, Grouping, Product);

    /// <inheritdoc/>
    public override Tensor MergedWeight(Tensor weight) => BatMath.MergedWeight(weight, miss_block, Grouping, Product);

    /// <inheritdoc/>
    public override Tensor UnmergedWeight(Tensor merged) => BatMath.UnmergedWeight(merged, miss_block, Grouping, Product);

    /// <inheritdoc/>
    public override IEnumerable<KeyValuePair<string, Tensor>> PeftTensors() => [new("miss_block", miss_block)];
}
