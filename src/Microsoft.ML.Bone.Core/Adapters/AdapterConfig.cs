namespace Microsoft.ML.Bone.Adapters;

/// <summary>
/// Options shared by every adapter method: which linear layers get an adapter and which modules are trained in
/// full. Matching follows Hugging Face PEFT exactly, so a PEFT <c>adapter_config.json</c> means the same here.
/// </summary>
public abstract class AdapterConfig
{
    /// <summary>
    /// Module names to adapt. A module path matches when it equals an entry or ends with <c>"." + entry</c>
    /// (e.g. <c>"q_proj"</c> matches <c>model.layers.3.self_attn.q_proj</c>). The single entry
    /// <c>"all-linear"</c> adapts every adaptable linear layer except output heads (<c>lm_head</c>) and
    /// modules listed in <see cref="ModulesToSave"/>. Ignored when <see cref="TargetModulesRegex"/> is set.
    /// </summary>
    public IReadOnlyList<string> TargetModules { get; set; } = [];

    /// <summary>A regular expression that must match the whole module path (PEFT's string form of <c>target_modules</c>).</summary>
    public string? TargetModulesRegex { get; set; }

    /// <summary>Module names never adapted, matched like <see cref="TargetModules"/>. Default: none.</summary>
    public IReadOnlyList<string> ExcludeModules { get; set; } = [];

    /// <summary>A regular expression; modules whose whole path matches are never adapted.</summary>
    public string? ExcludeModulesRegex { get; set; }

    /// <summary>
    /// Layer indices to adapt (e.g. <c>[0, 1]</c>); empty means every layer. The index is the number after
    /// <see cref="LayersPattern"/> in the module path, or after the last <c>name.</c> followed by digits.
    /// </summary>
    public IReadOnlyList<int> LayersToTransform { get; set; } = [];

    /// <summary>Name of the layer list in module paths (e.g. <c>"layers"</c>, <c>"layer"</c>); default: any.</summary>
    public string? LayersPattern { get; set; }

    /// <summary>
    /// Modules trained in full and saved with the adapter (PEFT <c>modules_to_save</c>), e.g. <c>"classifier"</c>.
    /// </summary>
    public IReadOnlyList<string> ModulesToSave { get; set; } = [];

    /// <summary>PEFT's <c>peft_type</c> for this method (<c>BONE</c>, <c>LORA</c>).</summary>
    public abstract string PeftType { get; }

    /// <summary>The rank / block size shared by all methods here.</summary>
    public abstract int Rank { get; }

    /// <summary>
    /// Creates the adapter for one targeted layer; throws when the layer cannot take it. Nothing in the model may
    /// change here: changes to the base weight wait for <see cref="LayerAdapter.Commit"/>, so a failed injection
    /// leaves the model as it was.
    /// </summary>
    internal abstract LayerAdapter CreateAdapter(AdaptableLinear layer, string modulePath, TorchSharp.torch.Generator? random);

    /// <summary>
    /// A copy of these options (the one place configs are copied: saved models restore PiSSA / OLoRA with a plain
    /// initialisation, PEFT export rewrites them as a wider LoRA). Lists are shared; they are read-only.
    /// </summary>
    public AdapterConfig Clone() => (AdapterConfig)MemberwiseClone();

    /// <summary>Copies where the adapter goes (targets, exclusions, layers, modules to save) from <paramref name="source"/>, so a converted adapter covers the same modules.</summary>
    public void CopyPlacementFrom(AdapterConfig source)
    {
        TargetModules = source.TargetModules;
        TargetModulesRegex = source.TargetModulesRegex;
        ExcludeModules = source.ExcludeModules;
        ExcludeModulesRegex = source.ExcludeModulesRegex;
        LayersToTransform = source.LayersToTransform;
        LayersPattern = source.LayersPattern;
        ModulesToSave = source.ModulesToSave;
    }

    /// <summary>Checks option values; throws <see cref="ArgumentException"/> naming the option.</summary>
    public virtual void Validate()
    {
        if (Rank <= 0)
            throw new ArgumentException($"r must be a positive integer, got {Rank}.", "r");
        if (TargetModulesRegex is null && TargetModules.Count == 0)
            throw new ArgumentException("Specify TargetModules (module names such as \"q_proj\") or TargetModulesRegex.", nameof(TargetModules));
        if (TargetModulesRegex is not null && (LayersToTransform.Count > 0 || LayersPattern is not null))
            throw new ArgumentException("LayersToTransform and LayersPattern cannot be used with TargetModulesRegex (as in PEFT).", nameof(LayersToTransform));
    }
}
