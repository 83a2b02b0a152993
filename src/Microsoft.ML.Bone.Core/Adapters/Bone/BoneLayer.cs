using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Adapters.Bone;

/// <summary>Bone on one linear layer: trainable <c>bone_block</c> (r, out), y = base(x) + ChunkSum(x)·bone.</summary>
public sealed class BoneLayer : LayerAdapter
{
    /// <summary>The shared block, (r, out_features), float32.</summary>
    public Parameter bone_block;

    private readonly long _inFeatures;

    /// <summary>Creates a zero (or, for tests, Kaiming-uniform) block for <paramref name="layer"/>.</summary>
    public BoneLayer(string modulePath, AdaptableLinear layer, int r, bool randomInit = false, Generator? random = null)
        : base(nameof(BoneLayer), modulePath)
    {
        _inFeatures = layer.InFeatures;
        bone_block = new Parameter(zeros([r, layer.OutFeatures], dtype: ScalarType.Float32, device: layer.weight.device));
        if (randomInit) Nn.Initialize.KaimingUniform(bone_block, random);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input, AdaptableLinear layer)
    {
        ScalarType dtype = input.dtype;
        Tensor result = nn.functional.linear(input, layer.weight, layer.bias);
        Tensor update = BoneMath.Forward(AsFloat32(input), bone_block);
        return (result + update).to(dtype);
    }

    /// <inheritdoc/>
    public override Tensor DeltaWeight(Tensor weight) => BoneMath.DeltaWeight(bone_block, _inFeatures);

    /// <inheritdoc/>
    public override Tensor UnmergedWeight(Tensor merged) => merged - BoneMath.DeltaWeight(bone_block, _inFeatures);

    /// <inheritdoc/>
    public override IEnumerable<KeyValuePair<string, Tensor>> PeftTensors() => [new("bone_block", bone_block)];
}
