namespace Microsoft.ML.Bone.Adapters.Bone;

/// <summary>Which block-affine layer <see cref="BoneConfig"/> builds.</summary>
public enum BoneVariant
{
    /// <summary>One shared (r, out) block added to every input chunk: ΔW = boneᵀ tiled over the input (PEFT <c>init_weights=true</c>).</summary>
    Bone,

    /// <summary>Bone with the weight guide: per r×r block ΔW_ij = W_ij·B + B (PEFT <c>init_weights="bat"</c>).</summary>
    Bat,

    /// <summary>MiSS-mini: an (r, mini_r) block repeated along the output, r·mini_r parameters per layer (PEFT <c>init_weights="mini"</c>).</summary>
    Mini,
}

/// <summary>Which block index selects Bat's trainable r×r matrix.</summary>
public enum BatGrouping
{
    /// <summary>B_i is indexed by the output (row) block, parameter (out/r, r, r). Hugging Face PEFT's layout.</summary>
    OutputBlock,

    /// <summary>B_j is indexed by the input (column) block, parameter (in/r, r, r). The RWKV-PEFT layout.</summary>
    InputBlock,
}

/// <summary>How Bat combines a weight block with its trainable block.</summary>
public enum BatProduct
{
    /// <summary>Matrix product W_ij·B (the paper's Bat).</summary>
    Matrix,

    /// <summary>Elementwise product W_ij ⊙ B (the paper's Bat-Hadamard ablation).</summary>
    Hadamard,
}

/// <summary>
/// Options of the Bone, Bat and MiSS-mini adapters (Hugging Face PEFT <c>MissConfig</c>, formerly <c>BoneConfig</c>).
/// Defaults follow PEFT: r = 64, zero-initialised blocks so the adapted model starts equal to the base model.
/// </summary>
public sealed class BoneConfig : AdapterConfig
{
    /// <summary>Block size r. Default 64. Bone accepts any in_features (the last chunk is zero-padded); Bat needs r to divide both dimensions.</summary>
    public int R { get; set; } = 64;

    /// <summary>Bone (default), Bat or MiSS-mini.</summary>
    public BoneVariant Variant { get; set; } = BoneVariant.Bone;

    /// <summary>MiSS-mini only: the block's width along the output; must divide every targeted out_features. Default 1 (PEFT's).</summary>
    public int MiniR { get; set; } = 1;

    /// <summary>
    /// Dropout on the adapter path's input during training (PEFT <c>miss_dropout</c>), for Bone and MiSS-mini; Bat
    /// ignores it, as PEFT does. Default 0.
    /// </summary>
    public double Dropout { get; set; }

    /// <summary>Random (Kaiming-uniform) Bone blocks instead of zeros, as PEFT's <c>init_weights=false</c>; useful for tests only. Default false.</summary>
    public bool RandomInit { get; set; }

    /// <summary>Bat only: which block index selects B. Default <see cref="BatGrouping.OutputBlock"/> (PEFT).</summary>
    public BatGrouping BatGrouping { get; set; } = BatGrouping.OutputBlock;

    /// <summary>Bat only: matrix (default) or Hadamard product.</summary>
    public BatProduct BatProduct { get; set; } = BatProduct.Matrix;

    /// <summary>
    /// Bat only: recompute the merged weight in the backward pass instead of keeping it for the whole step,
    /// trading some compute for memory. Default false.
    /// </summary>
    public bool GradientCheckpointing { get; set; }

    /// <inheritdoc/>
    public override string PeftType => "MISS";

    /// <inheritdoc/>
    public override int Rank => R;

    /// <summary>True when PEFT can represent this configuration (Bone, or Bat with PEFT's grouping and product).</summary>
    public bool IsPeftCompatible => Variant != BoneVariant.Bat || (BatGrouping == BatGrouping.OutputBlock && BatProduct == BatProduct.Matrix);

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (Variant != BoneVariant.Bone && RandomInit)
            throw new ArgumentException($"RandomInit exists for Bone only; {Variant} blocks always start at zero (as in PEFT).", nameof(RandomInit));
        if (MiniR <= 0) throw new ArgumentException($"MiniR must be positive, got {MiniR}.", nameof(MiniR));
        if (Dropout is < 0 or >= 1 || double.IsNaN(Dropout)) throw new ArgumentException($"Dropout must be in [0, 1), got {Dropout}.", nameof(Dropout));
    }

    internal override LayerAdapter CreateAdapter(AdaptableLinear layer, string modulePath, TorchSharp.torch.Generator? random) => Variant switch
    {
        BoneVariant.Bone => new BoneLayer(modulePath, layer, R, RandomInit, random, dropout: Dropout),
        BoneVariant.Mini => new BoneLayer(modulePath, layer, R, miniR: MiniR, dropout: Dropout),
        _ => new BatLayer(modulePath, layer, R, BatGrouping, BatProduct, GradientCheckpointing),
    };
}
