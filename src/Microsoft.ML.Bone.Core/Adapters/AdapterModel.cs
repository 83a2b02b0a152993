using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Adapters;

/// <summary>
/// A model with adapters injected (PEFT's <c>PeftModel</c>): finds the targeted <see cref="AdaptableLinear"/> layers
/// by name, attaches one adapter to each, freezes everything else except <c>ModulesToSave</c>, and merges or
/// unmerges all adapters at once. Module paths are the model's own (Hugging Face) names.
/// </summary>
public sealed class AdapterModel
{
    /// <summary>The prefix PEFT puts before module paths in adapter files.</summary>
    public const string PeftKeyPrefix = "base_model.model.";

    private readonly List<KeyValuePair<string, AdaptableLinear>> _layers;
    private readonly List<KeyValuePair<string, Parameter>> _savedParameters;

    private AdapterModel(nn.Module model, AdapterConfig config, List<KeyValuePair<string, AdaptableLinear>> layers, List<KeyValuePair<string, Parameter>> saved)
    {
        Model = model;
        Config = config;
        _layers = layers;
        _savedParameters = saved;
    }

    /// <summary>The wrapped model (changed in place).</summary>
    public nn.Module Model { get; }

    /// <summary>The configuration the adapters were built from.</summary>
    public AdapterConfig Config { get; }

    /// <summary>Adapted layers by module path, in model order.</summary>
    public IReadOnlyList<KeyValuePair<string, AdaptableLinear>> AdaptedLayers => _layers;

    /// <summary>Parameters of <c>ModulesToSave</c> modules by full parameter name (e.g. <c>classifier.dense.weight</c>).</summary>
    public IReadOnlyList<KeyValuePair<string, Parameter>> SavedModuleParameters => _savedParameters;

    /// <summary>
    /// Injects adapters into <paramref name="model"/> as <paramref name="config"/> says. Throws when no layer
    /// matches, when a targeted module is not an adaptable linear layer, or when a layer cannot take the adapter
    /// (e.g. Bat with a rank that does not divide the weight).
    /// </summary>
    /// <param name="model">The model to change in place.</param>
    /// <param name="config">What to inject where.</param>
    /// <param name="random">Draws random initial values (LoRA's A, PiSSA's randomized sketch); null uses torch's global generator.</param>
    public static AdapterModel Inject(nn.Module model, AdapterConfig config, Generator? random = null)
    {
        config.Validate();
        var layers = new List<KeyValuePair<string, AdaptableLinear>>();
        var unsupported = new List<string>();
        foreach (var (path, module) in model.named_modules())
        {
            if (path.Length == 0 || !TargetModuleMatcher.IsTarget(config, path)) continue;
            if (module is AdaptableLinear linear) layers.Add(new(path, linear));
            else if (module is not LayerAdapter && !IsInsideAdapter(path)) unsupported.Add($"{path} ({module.GetType().Name})");
        }
        if (unsupported.Count > 0 && config.TargetModulesRegex is null && !(config.TargetModules is [TargetModuleMatcher.AllLinear]))
            throw new ArgumentException($"Target modules must be linear layers; these are not: {string.Join(", ", unsupported)}.", nameof(config));
        if (layers.Count == 0)
            throw new ArgumentException($"Target modules {Describe(config)} not found in the model. Its linear layers are: {string.Join(", ", LinearPaths(model).Take(12))}{(LinearPaths(model).Count() > 12 ? ", …" : "")}.", nameof(config));
        if (layers.FirstOrDefault(l => l.Value.Adapter is not null) is { Key: not null } taken)
            throw new ArgumentException($"Layer '{taken.Key}' already has an adapter; remove it (or use AdapterModel's own methods) before injecting another.", nameof(config));

        var saved = new List<KeyValuePair<string, Parameter>>();
        if (config.ModulesToSave.Count > 0)
        {
            foreach (var (name, p) in model.named_parameters())
            {
                int dot = name.LastIndexOf('.');
                if (dot >= 0 && TargetModuleMatcher.IsModuleToSave(config, name[..dot])) saved.Add(new(name, p));
            }
            if (saved.Count == 0)
                throw new ArgumentException($"ModulesToSave [{string.Join(", ", config.ModulesToSave)}] matched no module with parameters.", nameof(config));
        }

        // Every adapter is created before the model is touched: a layer that cannot take one leaves nothing attached
        // and no base weight changed.
        var adapters = new List<LayerAdapter>();
        try
        {
            foreach (var (path, layer) in layers) adapters.Add(config.CreateAdapter(layer, path, random));
        }
        catch
        {
            foreach (LayerAdapter a in adapters) a.Dispose();
            throw;
        }
        for (int i = 0; i < layers.Count; i++)
        {
            adapters[i].Commit(layers[i].Value);
            layers[i].Value.Attach(adapters[i]);
        }

        foreach (var (_, p) in model.named_parameters()) p.requires_grad = false;
        foreach (var (_, layer) in layers) foreach (var p in layer.Adapter!.parameters()) p.requires_grad = true;
        foreach (var (_, p) in saved) p.requires_grad = true;
        return new AdapterModel(model, config, layers, saved);
    }

    /// <summary>Parameters that train: every adapter parameter plus those of <c>ModulesToSave</c>.</summary>
    public IEnumerable<Parameter> TrainableParameters() =>
        _layers.SelectMany(l => l.Value.Adapter!.parameters()).Concat(_savedParameters.Select(p => p.Value));

    /// <summary>Trainable and total parameter counts (adapters included in the total, as PEFT reports).</summary>
    public AdapterParameterSummary Summary()
    {
        long trainable = TrainableParameters().Sum(p => p.numel());
        long total = Model.parameters().Sum(p => p.numel());
        return new AdapterParameterSummary(trainable, total, _layers.Count);
    }

    /// <summary>Merges every adapter into its base weight; <paramref name="safe"/> checks for NaN/inf first.</summary>
    public void Merge(bool safe = false) { foreach (var (_, l) in _layers) l.Merge(safe); }

    /// <summary>Undoes <see cref="Merge"/>.</summary>
    public void Unmerge() { foreach (var (_, l) in _layers) l.Unmerge(); }

    /// <summary>Turns every adapter on or off without removing it.</summary>
    public void SetAdaptersEnabled(bool enabled) { foreach (var (_, l) in _layers) l.AdapterEnabled = enabled; }

    /// <summary>Merges every adapter for good and removes them, leaving the plain model.</summary>
    public nn.Module MergeAndUnload(bool safe = false)
    {
        foreach (var (_, l) in _layers) l.MergeAndUnload(safe);
        foreach (var (_, p) in Model.named_parameters()) p.requires_grad = false;
        _layers.Clear();
        return Model;
    }

    /// <summary>
    /// The tensors of a PEFT adapter file: <c>base_model.model.&lt;path&gt;.&lt;suffix&gt;</c> for every adapter
    /// tensor and every <c>ModulesToSave</c> parameter. Tensors are the live ones (not copies).
    /// </summary>
    public IEnumerable<KeyValuePair<string, Tensor>> PeftStateDict()
    {
        foreach (var (path, layer) in _layers)
            foreach (var (suffix, t) in layer.Adapter!.PeftTensors())
                yield return new(PeftKeyPrefix + path + "." + suffix, t);
        foreach (var (name, p) in _savedParameters)
            yield return new(PeftKeyPrefix + name, p);
    }

    /// <summary>
    /// Loads tensors keyed as in <see cref="PeftStateDict"/> (adapter-name suffixes such as <c>.default</c> are not
    /// expected, as PEFT strips them on save). Every key must belong to this model and every adapter tensor must
    /// be present; errors name the key.
    /// </summary>
    public void LoadPeftStateDict(IReadOnlyDictionary<string, Tensor> tensors, string source)
    {
        var expected = PeftStateDict().ToDictionary(p => p.Key, p => p.Value);
        foreach (string key in tensors.Keys)
            if (!expected.ContainsKey(key))
                throw new InvalidDataException($"{source}: tensor '{key}' does not belong to any adapted layer or saved module of this model.");
        foreach (string key in expected.Keys)
            if (!tensors.ContainsKey(key))
                throw new InvalidDataException($"{source}: tensor '{key}' is missing.");

        using var noGrad = no_grad();
        foreach (var (path, layer) in _layers)
            foreach (var (suffix, _) in layer.Adapter!.PeftTensors().ToList())
                Wrap(source, () => layer.Adapter!.LoadPeftTensor(suffix, tensors[PeftKeyPrefix + path + "." + suffix]));
        foreach (var (name, p) in _savedParameters)
        {
            Tensor value = tensors[PeftKeyPrefix + name];
            if (!value.shape.SequenceEqual(p.shape))
                throw new InvalidDataException($"{source}: '{PeftKeyPrefix + name}' has shape [{string.Join(", ", value.shape)}] but the model's '{name}' is [{string.Join(", ", p.shape)}].");
            p.copy_(value.to(p.dtype, p.device));
        }
    }

    private static void Wrap(string source, Action load)
    {
        try { load(); }
        catch (InvalidDataException e) { throw new InvalidDataException($"{source}: {e.Message}", e); }
    }

    private static bool IsInsideAdapter(string path) => path.Split('.').Contains("adapter");

    private static IEnumerable<string> LinearPaths(nn.Module model) =>
        model.named_modules().Where(m => m.module is AdaptableLinear).Select(m => m.name);

    private static string Describe(AdapterConfig config) =>
        config.TargetModulesRegex is not null ? $"matching /{config.TargetModulesRegex}/" : $"[{string.Join(", ", config.TargetModules)}]";
}

/// <summary>How many parameters train, out of how many.</summary>
public readonly record struct AdapterParameterSummary(long Trainable, long Total, int AdaptedLayers)
{
    /// <summary>Trainable share in percent.</summary>
    public double TrainablePercent => Total == 0 ? 0 : 100.0 * Trainable / Total;

    /// <inheritdoc/>
    public override string ToString() =>
        $"trainable params: {Trainable:N0} || all params: {Total:N0} || trainable%: {TrainablePercent:0.0000} ({AdaptedLayers} adapted layers)";
}
