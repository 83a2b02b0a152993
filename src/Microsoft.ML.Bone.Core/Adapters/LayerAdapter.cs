using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Adapters;

/// <summary>
/// The trainable part that one adapter method adds to one <see cref="AdaptableLinear"/>. Parameters are kept in
/// float32 whatever the base dtype (as PEFT does by default): the layer casts inputs up and results back.
/// </summary>
public abstract class LayerAdapter : nn.Module
{
    /// <summary>Creates the adapter for the layer at <paramref name="modulePath"/>.</summary>
    protected LayerAdapter(string name, string modulePath) : base(name) => ModulePath = modulePath;

    /// <summary>Where the adapted layer sits in the model, e.g. <c>model.layers.0.self_attn.q_proj</c>.</summary>
    public string ModulePath { get; }

    /// <summary>
    /// Applies what creating the adapter decided but deferred: PiSSA / OLoRA turn the base weight into its residual
    /// here. Called once every targeted layer's adapter has been created, just before it is attached.
    /// </summary>
    internal virtual void Commit(AdaptableLinear layer) { }

    /// <summary>
    /// True when the adapter adds an update computed from the input alone (Bone, MiSS-mini, LoRA: see
    /// <see cref="Update"/>); false when it transforms the weight itself (Bat), so several can be composed.
    /// </summary>
    public virtual bool IsAdditive => true;

    /// <summary>An additive adapter's contribution to the output for float32 input <paramref name="x"/>, float32.</summary>
    public virtual Tensor Update(Tensor x) => throw new NotSupportedException($"{GetType().Name} transforms the weight; it has no additive update.");

    /// <summary>The layer's output with this adapter alone applied, in the input's dtype.</summary>
    public virtual Tensor Forward(Tensor input, AdaptableLinear layer)
    {
        ScalarType dtype = input.dtype;
        long rows = input.numel() / Math.Max(1, input.shape[^1]);
        if (dtype == ScalarType.Float32 && layer.weight.dtype == ScalarType.Float32 && rows > 32)
        {
            // One GEMM for base and update: the update is computed first and the base product accumulated into it
            // (beta = 1), instead of a base output, an update and a third tensor for their sum. Autograd is unchanged:
            // neither product needs its own output in backward.
            long inFeatures = input.shape[^1];
            Tensor flat = input.reshape(-1, inFeatures);
            Tensor update = Update(flat);
            if (layer.bias is not null) update = update.add_(layer.bias);
            return update.addmm_(flat, layer.weight.t()).view([.. input.shape[..^1], layer.OutFeatures]);
        }
        Tensor result = AdaptableLinear.Linear(input, layer.weight, layer.bias);
        return (result + Update(AsFloat32(input))).to(dtype);
    }

    /// <summary>ΔW for the float32 base weight <paramref name="weight"/>, [out, in], float32.</summary>
    public abstract Tensor DeltaWeight(Tensor weight);

    /// <summary>W + ΔW(W), float32.</summary>
    public virtual Tensor MergedWeight(Tensor weight) => weight + DeltaWeight(weight);

    /// <summary>Recovers W from <paramref name="merged"/> = W + ΔW(W), float32.</summary>
    public abstract Tensor UnmergedWeight(Tensor merged);

    /// <summary>The tensors PEFT saves for this layer, keyed by the suffix after the module path (e.g. <c>bone_block</c>, <c>lora_A.weight</c>).</summary>
    public abstract IEnumerable<KeyValuePair<string, Tensor>> PeftTensors();

    /// <summary>Copies a PEFT tensor into this adapter; throws naming the key when the suffix or shape does not fit.</summary>
    public void LoadPeftTensor(string suffix, Tensor value)
    {
        Tensor? target = null;
        foreach (var (name, tensor) in PeftTensors()) if (name == suffix) target = tensor;
        if (target is null)
            throw new InvalidDataException($"'{ModulePath}.{suffix}' is not a tensor of this adapter (expected {string.Join(", ", PeftTensors().Select(p => ModulePath + "." + p.Key))}).");
        if (!target.shape.SequenceEqual(value.shape))
            throw new InvalidDataException($"'{ModulePath}.{suffix}' has shape [{string.Join(", ", value.shape)}] but this layer needs [{string.Join(", ", target.shape)}].");
        using var noGrad = no_grad();
        target.copy_(value.to(target.dtype, target.device));
    }

    // Adapter weights stay float32 when the model is converted to bf16/f16; only the device follows.
    /// <inheritdoc/>
    protected override nn.Module _to(ScalarType dtype, bool non_blocking) => this;

    /// <inheritdoc/>
    protected override nn.Module _to(Device device, ScalarType dtype, bool non_blocking) => _to(device.type, device.index, non_blocking);

    /// <summary>Input cast to float32 for the adapter path.</summary>
    protected static Tensor AsFloat32(Tensor t) => t.dtype == ScalarType.Float32 ? t : t.to(ScalarType.Float32);
}
