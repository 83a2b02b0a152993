using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Adapters.Lora;

/// <summary>LoRA on one linear layer: y = base(x) + scale·B(A(dropout(x))), A = <c>lora_A</c> (r, in), B = <c>lora_B</c> (out, r).</summary>
public sealed class LoraLayer : LayerAdapter
{
    /// <summary>Down projection, weight (r, in_features), float32.</summary>
    public Linear lora_A;

    /// <summary>Up projection, weight (out_features, r), float32.</summary>
    public Linear lora_B;

    private readonly Nn.Dropout? _dropout;

    /// <summary>
    /// Creates A and B for <paramref name="layer"/> as <paramref name="config"/> says. PiSSA and OLoRA also
    /// rewrite the layer's weight into the residual W − scale·B·A, so the output is unchanged at step 0.
    /// </summary>
    public LoraLayer(string modulePath, AdaptableLinear layer, LoraConfig config, Generator? random = null) : this(modulePath, layer, config, random, deferResidual: false) { }

    // AdapterModel.Inject defers the residual to Commit, so a failed injection changes no base weight.
    internal LoraLayer(string modulePath, AdaptableLinear layer, LoraConfig config, Generator? random, bool deferResidual)
        : base(nameof(LoraLayer), modulePath)
    {
        Scale = config.Scale;
        Init = config.Init;
        Device device = layer.weight.device;
        lora_A = nn.Linear(layer.InFeatures, config.R, hasBias: false, device: device, dtype: ScalarType.Float32);
        lora_B = nn.Linear(config.R, layer.OutFeatures, hasBias: false, device: device, dtype: ScalarType.Float32);
        if (config.Dropout > 0) _dropout = new Nn.Dropout(config.Dropout);
        RegisterComponents();
        LoraInitializer.Initialize(this, layer, config, random);
        if (!deferResidual) Commit(layer);
    }

    /// <summary>alpha / r (or alpha / √r).</summary>
    public double Scale { get; }

    /// <summary>How A and B were initialised.</summary>
    public LoraInit Init { get; }

    /// <summary>
    /// For PiSSA / OLoRA: copies of A and B as initialised. The base weight holds W − scale·B₀·A₀, so an adapter
    /// that must apply to the original W is written as the rank-2r LoRA [A; A₀], [B, −B₀].
    /// </summary>
    public (Tensor A, Tensor B)? InitialFactors { get; internal set; }

    /// <summary>PiSSA / OLoRA: the factors whose product leaves the base weight at <see cref="Commit"/>.</summary>
    internal (Tensor A, Tensor B)? PendingResidual { get; set; }

    /// <inheritdoc/>
    internal override void Commit(AdaptableLinear layer)
    {
        if (PendingResidual is not { } pending) return;
        LoraInitializer.ApplyResidual(this, layer, pending.A, pending.B);
        pending.A.Dispose();
        pending.B.Dispose();
        PendingResidual = null;
    }

    /// <summary>
    /// Restores PiSSA / OLoRA initial factors saved with a model. With <paramref name="applyResidual"/> a freshly
    /// loaded base weight becomes the residual W − scale·B₀·A₀ by the same arithmetic as at initialisation, so the
    /// original run is reproduced exactly without recomputing any decomposition; without it the base already holds
    /// the residual.
    /// </summary>
    public void RestoreInitialFactors(AdaptableLinear layer, Tensor initialA, Tensor initialB, bool applyResidual)
    {
        if (!initialA.shape.SequenceEqual(lora_A.weight.shape) || !initialB.shape.SequenceEqual(lora_B.weight.shape))
            throw new InvalidDataException($"'{ModulePath}': saved initial factors [{string.Join(", ", initialA.shape)}] / [{string.Join(", ", initialB.shape)}] do not fit this layer.");
        Tensor a = initialA.to(ScalarType.Float32), b = initialB.to(ScalarType.Float32);
        if (applyResidual) LoraInitializer.ApplyResidual(this, layer, a, b);
        else InitialFactors = (a.clone().DetachFromDisposeScope(), b.clone().DetachFromDisposeScope());
    }

    /// <inheritdoc/>
    public override Tensor Update(Tensor x)
    {
        if (_dropout is not null) x = _dropout.call(x);
        // The scale goes on the r-wide intermediate, not on the out-wide result: a pass over r columns instead of out.
        return lora_B.call(lora_A.call(x).mul_(Scale));
    }

    /// <inheritdoc/>
    public override Tensor DeltaWeight(Tensor weight) => lora_B.weight.matmul(lora_A.weight) * Scale;

    /// <inheritdoc/>
    public override Tensor UnmergedWeight(Tensor merged) => merged - DeltaWeight(merged);

    /// <inheritdoc/>
    public override IEnumerable<KeyValuePair<string, Tensor>> PeftTensors() =>
        [new("lora_A.weight", lora_A.weight), new("lora_B.weight", lora_B.weight)];
}
