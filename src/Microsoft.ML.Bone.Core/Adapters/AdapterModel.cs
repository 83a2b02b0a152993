using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Adapters;

/// <summary>
/// A model with adapters injected (PEFT's <c>PeftModel</c>): finds the targeted <see cref="AdaptableLinear"/> layers
/// by name, attaches one adapter to each, freezes everything else except <c>ModulesToSave</c>, and merges or
/// unmerges all adapters at once. Module paths are the model's own (Hugging Face) names.
/// One base can hold several named adapters (PEFT's <c>load_adapter</c> / <c>set_adapter</c> /
/// <c>disable_adapter</c> / <c>delete_adapter</c>), of different methods too: one is active at a time, switching costs
/// nothing (the base is never reloaded or re-merged), and only the active one trains. Each adapter keeps its own copy
/// of its <c>ModulesToSave</c> modules (a classifier head per task), swapped into the model when it becomes active.
/// </summary>
public sealed class AdapterModel
{
    /// <summary>The prefix PEFT puts before module paths in adapter files.</summary>
    public const string PeftKeyPrefix = "base_model.model.";

    private sealed class Entry(AdapterConfig config, List<KeyValuePair<string, AdaptableLinear>> layers, List<KeyValuePair<string, Parameter>> saved)
    {
        public AdapterConfig Config { get; } = config;
        public List<KeyValuePair<string, AdaptableLinear>> Layers { get; } = layers;
        public List<KeyValuePair<string, Parameter>> Saved { get; } = saved;
        // The adapter's own values of its modules-to-save while another adapter is active (null while it is active).
        public Dictionary<string, Tensor>? Stash { get; set; }
    }

    private readonly Dictionary<string, Entry> _adapters = [];
    private readonly List<string> _order = [];
    // The base model's own values of every modules-to-save parameter, as they were before any adapter trained them.
    private readonly Dictionary<string, Tensor> _baseSaved = new(StringComparer.Ordinal);
    private string _active;

    private AdapterModel(nn.Module model, string name, Entry entry)
    {
        Model = model;
        _active = name;
        _adapters[name] = entry;
        _order.Add(name);
        RememberBaseValues(entry);
    }

    /// <summary>The wrapped model (changed in place).</summary>
    public nn.Module Model { get; }

    /// <summary>The names of the adapters, in the order they were added.</summary>
    public IReadOnlyList<string> AdapterNames => _order;

    /// <summary>The active adapter: the one the model computes with (unless disabled), trains and saves.</summary>
    public string ActiveAdapter => _active;

    /// <summary>The configuration of the active adapter.</summary>
    public AdapterConfig Config => _adapters[_active].Config;

    /// <summary>The configuration of adapter <paramref name="name"/>.</summary>
    public AdapterConfig ConfigOf(string name) => Get(name).Config;

    /// <summary>Layers of the active adapter by module path, in model order.</summary>
    public IReadOnlyList<KeyValuePair<string, AdaptableLinear>> AdaptedLayers => _adapters[_active].Layers;

    /// <summary>Parameters of the active adapter's <c>ModulesToSave</c> modules by full parameter name (e.g. <c>classifier.dense.weight</c>).</summary>
    public IReadOnlyList<KeyValuePair<string, Parameter>> SavedModuleParameters => _adapters[_active].Saved;

    /// <summary>
    /// Injects adapters into <paramref name="model"/> as <paramref name="config"/> says, under <paramref name="name"/>.
    /// Throws when no layer matches, when a targeted module is not an adaptable linear layer, or when a layer cannot
    /// take the adapter (e.g. Bat with a rank that does not divide the weight); then nothing is attached and no base
    /// weight changed.
    /// </summary>
    /// <param name="model">The model to change in place.</param>
    /// <param name="config">What to inject where.</param>
    /// <param name="random">Draws random initial values (LoRA's A, PiSSA's randomized sketch); null uses torch's global generator.</param>
    /// <param name="name">The adapter's name (PEFT's <c>adapter_name</c>). Default <c>default</c>.</param>
    public static AdapterModel Inject(nn.Module model, AdapterConfig config, Generator? random = null, string name = Adapters.AdapterNames.Default)
    {
        Adapters.AdapterNames.Check(name);
        Entry entry = Create(model, config, random, name);
        foreach (var (_, p) in model.named_parameters()) p.requires_grad = false;
        var adapted = new AdapterModel(model, name, entry);
        adapted.SetTrainable();
        return adapted;
    }

    /// <summary>
    /// Adds another adapter <paramref name="name"/> to the same base (PEFT's <c>add_adapter</c> / <c>load_adapter</c>).
    /// It may use another method and other targets. The active adapter stays active; call <see cref="SetActiveAdapter"/>.
    /// Its modules-to-save start from the base model's values.
    /// </summary>
    public void AddAdapter(string name, AdapterConfig config, Generator? random = null)
    {
        Adapters.AdapterNames.Check(name);
        if (_adapters.ContainsKey(name)) throw new ArgumentException($"There is already an adapter named '{name}'.", nameof(name));
        if (config is Lora.LoraConfig { MutatesBaseWeights: true } || _adapters.Values.Any(e => e.Config is Lora.LoraConfig { MutatesBaseWeights: true }))
            throw new ArgumentException("PiSSA and OLoRA rewrite the base weights into their residual, so they cannot share a base with another adapter.", nameof(config));
        Entry entry = Create(Model, config, random, name);
        RememberBaseValues(entry);
        entry.Stash = entry.Saved.ToDictionary(p => p.Key, p => _baseSaved[p.Key].clone().DetachFromDisposeScope());
        // The new adapter's layers keep the active adapter active where both have a layer.
        foreach (var (_, layer) in entry.Layers) layer.ActiveAdapters = layer.AdapterNamed(_active) is null ? [] : [_active];
        _adapters[name] = entry;
        _order.Add(name);
        SetTrainable();
    }

    /// <summary>Makes <paramref name="name"/> the active adapter: it computes, trains and saves; the others are kept, frozen and ignored.</summary>
    public void SetActiveAdapter(string name)
    {
        Entry next = Get(name);
        if (name == _active) return;
        if (AllLayers().Any(l => l.Merged)) throw new InvalidOperationException($"Adapter '{_active}' is merged; unmerge before switching adapters.");
        if (AdaptersEnabled) SwapSavedModules(_adapters[_active], next);
        foreach (AdaptableLinear layer in AllLayers()) layer.ActiveAdapters = layer.AdapterNamed(name) is null ? [] : [name];
        _active = name;
        SetTrainable();
    }

    /// <summary>Removes adapter <paramref name="name"/> from every layer (PEFT's <c>delete_adapter</c>); the active one cannot be deleted while others exist.</summary>
    public void DeleteAdapter(string name)
    {
        Entry entry = Get(name);
        if (name == _active && _order.Count > 1) throw new InvalidOperationException($"'{name}' is the active adapter; make another one active first.");
        if (_order.Count == 1) throw new InvalidOperationException($"'{name}' is the only adapter; use MergeAndUnload or keep it.");
        foreach (var (_, layer) in entry.Layers) layer.Detach(name)?.Dispose();
        if (entry.Stash is not null) foreach (Tensor t in entry.Stash.Values) t.Dispose();
        _adapters.Remove(name);
        _order.Remove(name);
    }

    /// <summary>Parameters that train: the active adapter's parameters plus its <c>ModulesToSave</c>.</summary>
    public IEnumerable<Parameter> TrainableParameters() => TrainableOf(_adapters[_active]);

    /// <summary>Trainable and total parameter counts of the active adapter (adapters included in the total, as PEFT reports).</summary>
    public AdapterParameterSummary Summary()
    {
        long trainable = TrainableParameters().Sum(p => p.numel());
        long total = Model.parameters().Sum(p => p.numel());
        return new AdapterParameterSummary(trainable, total, AdaptedLayers.Count);
    }

    /// <summary>Merges the active adapter into its base weights; <paramref name="safe"/> checks for NaN/inf first.</summary>
    public void Merge(bool safe = false) { foreach (var (_, l) in AdaptedLayers) l.Merge(safe); }

    /// <summary>Undoes <see cref="Merge"/>.</summary>
    public void Unmerge() { foreach (AdaptableLinear l in AllLayers()) l.Unmerge(); }

    /// <summary>
    /// Turns every adapter on or off without removing it (PEFT's <c>disable_adapter</c>): off computes the base model
    /// alone, modules-to-save included (they hold the base model's values while disabled, as in PEFT).
    /// </summary>
    public void SetAdaptersEnabled(bool enabled)
    {
        if (enabled == AdaptersEnabled) return;
        foreach (AdaptableLinear l in AllLayers()) l.AdapterEnabled = enabled;
        if (enabled) SwapSavedModules(null, _adapters[_active]);
        else SwapSavedModules(_adapters[_active], null);
        AdaptersEnabled = enabled;
    }

    // Parks the values of <from>'s modules-to-save (null: the base's, which are kept anyway) and brings in <to>'s
    // (null: the base's). A module <from> saves but <to> does not returns to the base model's values.
    private void SwapSavedModules(Entry? from, Entry? to)
    {
        using var noGrad = no_grad();
        if (from is not null && from.Saved.Count > 0) from.Stash = from.Saved.ToDictionary(p => p.Key, p => p.Value.detach().clone().DetachFromDisposeScope());
        if (from is not null)
            foreach (var (key, p) in from.Saved)
                if (to is null || !to.Saved.Any(s => s.Key == key)) p.copy_(_baseSaved[key]);
        if (to is null) return;
        var incoming = to.Stash ?? new Dictionary<string, Tensor>();
        foreach (var (key, p) in to.Saved) p.copy_(incoming.TryGetValue(key, out Tensor? v) ? v : _baseSaved[key]);
        foreach (Tensor t in incoming.Values) t.Dispose();
        to.Stash = null;
    }

    /// <summary>False after <see cref="SetAdaptersEnabled"/>(false): the model computes the base alone.</summary>
    public bool AdaptersEnabled { get; private set; } = true;

    /// <summary>The active adapter's part on <paramref name="layer"/> (one of <see cref="AdaptedLayers"/>).</summary>
    public LayerAdapter AdapterOf(AdaptableLinear layer) =>
        layer.AdapterNamed(_active) ?? throw new ArgumentException($"The layer has no part of adapter '{_active}'.", nameof(layer));

    /// <summary>
    /// A save-time transform that replaces each adapted weight by its merged value (computed in float32, cast back),
    /// so a merged checkpoint is written without changing this model: nothing to unmerge, no rounding left behind in
    /// a reduced-precision base, and other adapters sharing the base are unaffected. With <paramref name="safe"/> a
    /// NaN or infinity in a merged weight is an error.
    /// </summary>
    public IO.WeightTransform MergedWeightTransform(bool safe = true)
    {
        var layers = AdaptedLayers.Where(l => !l.Value.Merged).ToDictionary(l => l.Key + ".weight", l => l.Value, StringComparer.Ordinal);
        return (name, value) =>
        {
            if (!layers.TryGetValue(name, out AdaptableLinear? layer)) return value;
            using var noGrad = no_grad();
            Tensor merged = AdapterOf(layer).MergedWeight(value.to(ScalarType.Float32));
            if (safe && !isfinite(merged).all().item<bool>())
                throw new InvalidOperationException($"NaNs or infinities in the merged weight of '{name}' (adapter '{_active}'); the adapter seems to be broken.");
            return merged.to(value.dtype);
        };
    }

    /// <summary>Merges the active adapter for good and removes every adapter, leaving the plain model.</summary>
    public nn.Module MergeAndUnload(bool safe = false)
    {
        foreach (var (_, l) in AdaptedLayers) l.Merge(safe);
        foreach (AdaptableLinear l in AllLayers()) l.MergeAndUnload(safe);
        foreach (var (_, p) in Model.named_parameters()) p.requires_grad = false;
        foreach (Entry e in _adapters.Values) e.Layers.Clear();
        return Model;
    }

    /// <summary>
    /// The tensors of a PEFT adapter file for the active adapter: <c>base_model.model.&lt;path&gt;.&lt;suffix&gt;</c> for
    /// every adapter tensor and every <c>ModulesToSave</c> parameter. Tensors are the live ones (not copies).
    /// </summary>
    public IEnumerable<KeyValuePair<string, Tensor>> PeftStateDict() => PeftStateDict(_active);

    /// <summary>The PEFT tensors of adapter <paramref name="name"/> (its modules-to-save from its own copy when it is not active).</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> PeftStateDict(string name)
    {
        Entry entry = Get(name);
        foreach (var (path, layer) in entry.Layers)
            foreach (var (suffix, t) in layer.AdapterNamed(name)!.PeftTensors())
                yield return new(PeftKeyPrefix + path + "." + suffix, t);
        foreach (var (key, p) in entry.Saved)
            yield return new(PeftKeyPrefix + key, entry.Stash?[key] ?? p);
    }

    /// <summary>
    /// Loads tensors keyed as in <see cref="PeftStateDict()"/> into adapter <paramref name="name"/> (the active one by
    /// default). Every key must belong to it and every tensor must be present; errors name the key.
    /// </summary>
    public void LoadPeftStateDict(IReadOnlyDictionary<string, Tensor> tensors, string source, string? name = null)
    {
        name ??= _active;
        Entry entry = Get(name);
        var expected = PeftStateDict(name).ToDictionary(p => p.Key, p => p.Value);
        foreach (string key in tensors.Keys)
            if (!expected.ContainsKey(key))
                throw new InvalidDataException($"{source}: tensor '{key}' does not belong to any adapted layer or saved module of this model.");
        foreach (string key in expected.Keys)
            if (!tensors.ContainsKey(key))
                throw new InvalidDataException($"{source}: tensor '{key}' is missing.");

        using var noGrad = no_grad();
        foreach (var (path, layer) in entry.Layers)
        {
            LayerAdapter adapter = layer.AdapterNamed(name)!;
            foreach (var (suffix, _) in adapter.PeftTensors().ToList())
                Wrap(source, () => adapter.LoadPeftTensor(suffix, tensors[PeftKeyPrefix + path + "." + suffix]));
        }
        foreach (var (key, p) in entry.Saved)
        {
            Tensor value = tensors[PeftKeyPrefix + key];
            if (!value.shape.SequenceEqual(p.shape))
                throw new InvalidDataException($"{source}: '{PeftKeyPrefix + key}' has shape [{string.Join(", ", value.shape)}] but the model's '{key}' is [{string.Join(", ", p.shape)}].");
            (entry.Stash?[key] ?? p).copy_(value.to(p.dtype, p.device));
        }
    }

    private static Entry Create(nn.Module model, AdapterConfig config, Generator? random, string name)
    {
        config.Validate();
        if (config is StateTuning.StateTuningConfig)
        {
            if (model is not StateTuning.IStateTunableModel tunable)
                throw new ArgumentException($"State tuning needs a recurrent model with a trainable initial state (RWKV-6); {model.GetType().Name} has none.", nameof(config));
            var state = new HashSet<IntPtr>(tunable.EnableStateTuning().Select(p => p.Handle));
            return new Entry(config, [], model.named_parameters().Where(p => state.Contains(p.parameter.Handle)).Select(p => new KeyValuePair<string, Parameter>(p.name, p.parameter)).ToList());
        }
        var layers = new List<KeyValuePair<string, AdaptableLinear>>();
        var unsupported = new List<string>();
        foreach (var (path, module) in model.named_modules())
        {
            if (path.Length == 0 || IsInsideAdapter(path) || !TargetModuleMatcher.IsTarget(config, path)) continue;
            if (module is AdaptableLinear linear) layers.Add(new(path, linear));
            else if (module is not LayerAdapter) unsupported.Add($"{path} ({module.GetType().Name})");
        }
        if (unsupported.Count > 0 && config.TargetModulesRegex is null && !(config.TargetModules is [TargetModuleMatcher.AllLinear]))
            throw new ArgumentException($"Target modules must be linear layers; these are not: {string.Join(", ", unsupported)}.", nameof(config));
        if (layers.Count == 0)
            throw new ArgumentException($"Target modules {Describe(config)} not found in the model. Its linear layers are: {string.Join(", ", LinearPaths(model).Take(12))}{(LinearPaths(model).Count() > 12 ? ", …" : "")}.", nameof(config));
        if (layers.FirstOrDefault(l => l.Value.AdapterNamed(name) is not null) is { Key: not null } taken)
            throw new ArgumentException($"Layer '{taken.Key}' already has an adapter named '{name}'.", nameof(config));

        var saved = new List<KeyValuePair<string, Parameter>>();
        if (config.ModulesToSave.Count > 0)
        {
            foreach (var (key, p) in model.named_parameters())
            {
                int dot = key.LastIndexOf('.');
                if (dot >= 0 && !IsInsideAdapter(key) && TargetModuleMatcher.IsModuleToSave(config, key[..dot])) saved.Add(new(key, p));
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
            layers[i].Value.Attach(name, adapters[i]);
        }
        return new Entry(config, layers, saved);
    }

    private void RememberBaseValues(Entry entry)
    {
        using var noGrad = no_grad();
        foreach (var (key, p) in entry.Saved)
            if (!_baseSaved.ContainsKey(key)) _baseSaved[key] = p.detach().clone().DetachFromDisposeScope();
    }

    // Only the active adapter (and its modules-to-save) trains; everything else is frozen.
    private void SetTrainable()
    {
        foreach (var (n, e) in _adapters)
            foreach (Parameter p in TrainableOf(e)) p.requires_grad = n == _active;
        foreach (Parameter p in TrainableOf(_adapters[_active])) p.requires_grad = true;
    }

    private IEnumerable<Parameter> TrainableOf(Entry e)
    {
        string name = _adapters.First(p => p.Value == e).Key;
        return e.Layers.SelectMany(l => l.Value.AdapterNamed(name)!.parameters()).Concat(e.Saved.Select(p => p.Value));
    }

    private IEnumerable<AdaptableLinear> AllLayers() => _adapters.Values.SelectMany(e => e.Layers.Select(l => l.Value)).Distinct();

    private Entry Get(string name) =>
        _adapters.TryGetValue(name, out Entry? e) ? e : throw new ArgumentException($"There is no adapter named '{name}' (adapters: {string.Join(", ", _order)}).", nameof(name));

    private static void Wrap(string source, Action load)
    {
        try { load(); }
        catch (InvalidDataException e) { throw new InvalidDataException($"{source}: {e.Message}", e); }
    }

    private static bool IsInsideAdapter(string path) => path.Split('.').Contains("adapters");

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
