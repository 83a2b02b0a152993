using TorchSharp.Modules;

namespace Microsoft.ML.Bone.Adapters.StateTuning;

/// <summary>A recurrent model whose initial state can be trained (RWKV-6's per-layer, per-head WKV state).</summary>
public interface IStateTunableModel
{
    /// <summary>Adds (if absent) and returns the trainable initial-state parameters, zero at first.</summary>
    IReadOnlyList<Parameter> EnableStateTuning();
}

/// <summary>
/// RWKV-PEFT's state tuning: no layer gets an adapter; the only trainable tensors are the initial WKV state of every
/// layer and head (<c>time_state</c>, [H, N, N]), which every sequence starts from. It costs nothing at inference and
/// adds L·H·N² parameters (1.6B: 24·32·64² = 3.1M). Saved and loaded like any adapter; it is not a Hugging Face PEFT
/// type, so its <c>adapter_config.json</c> says <c>peft_type: "STATE_TUNING"</c>, and RWKV-PEFT's own form is the
/// <c>blocks.N.att.time_state</c> tensors of a <c>.pth</c>.
/// </summary>
public sealed class StateTuningConfig : AdapterConfig
{
    /// <summary>The type written to adapter_config.json.</summary>
    public const string Type = "STATE_TUNING";

    /// <summary>Parameter names (suffix) of the trainable state.</summary>
    public const string ParameterName = "time_state";

    /// <inheritdoc/>
    public override string PeftType => Type;

    /// <summary>State tuning has no rank; 1 keeps the shared checks meaningful.</summary>
    public override int Rank => 1;

    /// <inheritdoc/>
    public override void Validate()
    {
        if (TargetModules.Count > 0 || TargetModulesRegex is not null)
            throw new ArgumentException("State tuning adapts no layers; leave TargetModules empty.", nameof(TargetModules));
    }

    internal override LayerAdapter CreateAdapter(AdaptableLinear layer, string modulePath, TorchSharp.torch.Generator? random) =>
        throw new InvalidOperationException("State tuning attaches nothing to linear layers.");
}
