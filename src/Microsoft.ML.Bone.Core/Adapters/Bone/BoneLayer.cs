using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Adapters.Bone;

/// <summary>
/// Bone (MiSS) on one linear layer: y = base(x) + ChunkSum(dropout(x))·block, with <c>miss_block</c> (r, out); or
/// MiSS-mini: <c>miss_block</c> (r, mini_r) repeated along the output, ΔW[o, k] = block[k mod r, o mod mini_r].
/// </summary>
public sealed class BoneLayer : LayerAdapter
{
    /// <summary>The shared block: (r, out_features), or (r, mini_r) for MiSS-mini; float32.</summary>
    public Parameter miss_block;

    private readonly long _inFeatures, _outFeatures;
    private readonly Nn.Dropout? _dropout;

    /// <summary>
    /// Creates a zero (or, for tests, Kaiming-uniform) block for <paramref name="layer"/>; with <paramref name="miniR"/>
    /// a MiSS-mini block, which needs out_features divisible by it.
    /// </summary>
    public BoneLayer(string modulePath, AdaptableLinear layer, int r, bool randomInit = false, Generator? random = null, int? miniR = null, double dropout = 0)
        : base(nameof(BoneLayer), modulePath)
    {
        if (miniR is { } m && (m <= 0 || layer.OutFeatures % m != 0))
            throw new ArgumentException($"MiSS-mini on '{modulePath}': mini_r = {m} must divide out_features ({layer.OutFeatures}), as the block is repeated along the output.");
        _inFeatures = layer.InFeatures;
        _outFeatures = layer.OutFeatures;
        MiniR = miniR;
        miss_block = new Parameter(zeros([r, miniR ?? layer.OutFeatures], dtype: ScalarType.Float32, device: layer.weight.device));
        if (randomInit) Nn.Initialize.KaimingUniform(miss_block, random);
        if (dropout > 0) _dropout = new Nn.Dropout(dropout);
        RegisterComponents();
    }

    /// <summary>MiSS-mini's width, or null for the full (r, out) block.</summary>
    public int? MiniR { get; }

    /// <summary>The block as an (r, out) matrix: itself, or the mini block repeated along the output.</summary>
    public Tensor Block() => MiniR is { } m ? miss_block.repeat(1, _outFeatures / m) : miss_block;

    /// <inheritdoc/>
    public override Tensor Update(Tensor x)
    {
        if (_dropout is not null) x = _dropout.call(x);
        return BoneMath.Forward(x, Block());
    }

    /// <inheritdoc/>
    public override Tensor DeltaWeight(Tensor weight) => BoneMath.DeltaWeight(Block(), _inFeatures);

    /// <inheritdoc/>
    public override Tensor UnmergedWeight(Tensor merged) => merged - BoneMath.DeltaWeight(Block(), _inFeatures);

    /// <inheritdoc/>
    public override IEnumerable<KeyValuePair<string, Tensor>> PeftTensors() => [new("miss_block", miss_block)];
}
