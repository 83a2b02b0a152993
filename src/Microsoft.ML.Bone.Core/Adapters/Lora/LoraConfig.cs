namespace Microsoft.ML.Bone.Adapters.Lora;

/// <summary>How LoRA's A and B start.</summary>
public enum LoraInit
{
    /// <summary>A Kaiming-uniform, B zero: the adapted model starts equal to the base (PEFT <c>init_lora_weights=true</c>).</summary>
    Default,

    /// <summary>A ~ N(0, 1/r), B zero (PEFT <c>"gaussian"</c>).</summary>
    Gaussian,

    /// <summary>A, B from the top-r singular triplets of W; W keeps the residual (PEFT <c>"pissa"</c>, or <c>"pissa_niter_N"</c> with <see cref="LoraConfig.PissaIterations"/>).</summary>
    PiSSA,

    /// <summary>A, B from the QR decomposition of W; W keeps the residual (PEFT <c>"olora"</c>).</summary>
    OLoRA,
}

/// <summary>
/// Options of LoRA and its PiSSA / OLoRA initialisations (Hugging Face PEFT <c>LoraConfig</c>):
/// y = W·x + scale·B·A·x with A (r, in), B (out, r) and scale = alpha / r (alpha / √r with rsLoRA).
/// </summary>
public sealed class LoraConfig : AdapterConfig
{
    /// <summary>Rank r. Default 8 (PEFT's default).</summary>
    public int R { get; set; } = 8;

    /// <summary>Scaling numerator alpha. Default 8 (PEFT's default), so scale = 1 at r = 8.</summary>
    public double Alpha { get; set; } = 8;

    /// <summary>Dropout on the adapter input during training. Default 0.</summary>
    public double Dropout { get; set; }

    /// <summary>Use alpha / √r instead of alpha / r (rank-stabilised LoRA). Default false.</summary>
    public bool UseRsLora { get; set; }

    /// <summary>Initialisation. Default <see cref="LoraInit.Default"/>.</summary>
    public LoraInit Init { get; set; } = LoraInit.Default;

    /// <summary>
    /// PiSSA only: 0 (default) computes the exact SVD; N &gt; 0 uses a randomized SVD with N power iterations,
    /// much faster on large weights (PEFT <c>"pissa_niter_N"</c>).
    /// </summary>
    public int PissaIterations { get; set; }

    /// <summary>The factor applied to B·A.</summary>
    public double Scale => UseRsLora ? Alpha / Math.Sqrt(R) : Alpha / R;

    /// <inheritdoc/>
    public override string PeftType => "LORA";

    /// <inheritdoc/>
    public override int Rank => R;

    /// <summary>Whether initialisation rewrites the base weight into a residual (PiSSA, OLoRA).</summary>
    public bool MutatesBaseWeights => Init is LoraInit.PiSSA or LoraInit.OLoRA;

    /// <inheritdoc/>
    public override void Validate()
    {
        base.Validate();
        if (Dropout is < 0 or >= 1) throw new ArgumentException($"Dropout must be in [0, 1), got {Dropout}.", nameof(Dropout));
        if (PissaIterations < 0) throw new ArgumentException($"PissaIterations must be ≥ 0, got {PissaIterations}.", nameof(PissaIterations));
        if (PissaIterations > 0 && Init != LoraInit.PiSSA) throw new ArgumentException("PissaIterations applies to Init = PiSSA only.", nameof(PissaIterations));
    }

    internal override LayerAdapter CreateAdapter(AdaptableLinear layer, string modulePath, TorchSharp.torch.Generator? random) => new LoraLayer(modulePath, layer, this, random, deferResidual: true);
}
