using Microsoft.ML.Bone.Nn;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Adapters;

/// <summary>
/// A linear layer (<c>y = x·Wᵀ + b</c>, weight stored [out, in] as in PyTorch) that can carry adapters, each under a
/// name (PEFT's <c>adapter_name</c>; one base can hold several and switch between them). Models use it wherever PEFT
/// could target an <c>nn.Linear</c>; its parameters are named <c>weight</c> and <c>bias</c>, so checkpoints load by
/// name, and adapters live under <c>adapters.&lt;name&gt;</c>.
/// </summary>
public sealed class AdaptableLinear : nn.Module<Tensor, Tensor>
{
    /// <summary>The frozen (or fully trained) base weight, [out_features, in_features].</summary>
    public Parameter weight;

    /// <summary>The base bias, [out_features], or null.</summary>
    public Parameter? bias;

    private readonly AdapterSet adapters = new();
    private readonly List<string> _merged = [];
    private string[] _active = [];

    /// <summary>
    /// Creates the layer where <paramref name="placement"/> says. When it initialises, weights get PyTorch's default
    /// <c>nn.Linear</c> initialisation, or N(0, <paramref name="std"/>) with zero bias when <paramref name="std"/> is
    /// given (transformers' <c>initializer_range</c>).
    /// </summary>
    public AdaptableLinear(long inFeatures, long outFeatures, bool hasBias = true, ParameterPlacement? placement = null, double? std = null)
        : base(nameof(AdaptableLinear))
    {
        placement ??= ParameterPlacement.Default;
        InFeatures = inFeatures;
        OutFeatures = outFeatures;
        weight = new Parameter(placement.Empty(outFeatures, inFeatures));
        if (hasBias) bias = new Parameter(placement.Empty(outFeatures));
        if (placement.Initialize)
        {
            using var noGrad = no_grad();
            if (std is { } s)
            {
                nn.init.normal_(weight, 0, s);
                if (bias is not null) nn.init.zeros_(bias);
            }
            else
            {
                nn.init.kaiming_uniform_(weight, a: Math.Sqrt(5));
                double bound = inFeatures > 0 ? 1 / Math.Sqrt(inFeatures) : 0;
                if (bias is not null) nn.init.uniform_(bias, -bound, bound);
            }
        }
        RegisterComponents();
    }

    /// <summary>Number of input features.</summary>
    public long InFeatures { get; }

    /// <summary>Number of output features.</summary>
    public long OutFeatures { get; }

    /// <summary>Every attached adapter by name, in the order attached.</summary>
    public IReadOnlyList<KeyValuePair<string, LayerAdapter>> Adapters => adapters.Items;

    /// <summary>Names of the adapters the forward pass applies (the others are kept but ignored).</summary>
    public IReadOnlyList<string> ActiveAdapters
    {
        get => _active;
        set
        {
            foreach (string name in value)
                if (adapters.Find(name) is null) throw new ArgumentException($"Layer has no adapter '{name}' (it has: {string.Join(", ", adapters.Items.Select(a => a.Key))}).", nameof(value));
            _active = [.. value];
        }
    }

    /// <summary>
    /// The layer's adapter when there is exactly one active (or, with none active, exactly one attached); null when
    /// there is none. Several active adapters are an error here: name one with <see cref="AdapterNamed"/>.
    /// </summary>
    public LayerAdapter? Adapter
    {
        get
        {
            var active = ActiveList();
            if (active.Count == 1) return active[0];
            if (active.Count == 0) return adapters.Items.Count == 1 ? adapters.Items[0].Value : null;
            throw new InvalidOperationException($"Adapters {string.Join(", ", _active)} are active; name the one you mean with AdapterNamed.");
        }
    }

    /// <summary>The adapter called <paramref name="name"/>, or null.</summary>
    public LayerAdapter? AdapterNamed(string name) => adapters.Find(name);

    /// <summary>Adapters folded into <see cref="weight"/>, in merge order.</summary>
    public IReadOnlyList<string> MergedAdapters => _merged;

    /// <summary>True while some adapter's update is folded into <see cref="weight"/>.</summary>
    public bool Merged => _merged.Count > 0;

    /// <summary>When false, the layer computes the base linear map only (the adapters are kept).</summary>
    public bool AdapterEnabled { get; set; } = true;

    /// <inheritdoc/>
    public override Tensor forward(Tensor input)
    {
        if (!AdapterEnabled && Merged) Unmerge();
        var active = AdapterEnabled && !Merged ? ActiveList() : [];
        if (active.Count == 0) return Linear(input, weight, bias);
        if (active.Count == 1) return active[0].Forward(input, this);

        // Several active adapters, as PEFT composes them: weight-guided ones (Bat) transform the weight in turn, then
        // additive ones (Bone, MiSS-mini, LoRA) add their updates, all in float32.
        ScalarType dtype = input.dtype;
        Tensor x = input.to(ScalarType.Float32);
        var guided = active.Where(a => !a.IsAdditive).ToList();
        Tensor result;
        if (guided.Count == 0) result = nn.functional.linear(input, weight, bias).to(ScalarType.Float32);
        else
        {
            Tensor w = weight.detach().to(ScalarType.Float32);
            foreach (LayerAdapter a in guided) w = w + a.DeltaWeight(w);
            result = nn.functional.linear(x, w, bias?.to(ScalarType.Float32));
        }
        foreach (LayerAdapter a in active.Where(a => a.IsAdditive)) result = result + a.Update(x);
        return result.to(dtype);
    }

    /// <summary>
    /// x·Wᵀ + b. A handful of rows (batched generation: one token per sequence) is computed as (W·xᵀ)ᵀ on the CPU:
    /// MKL packs the whole [in, out] operand for an x·Wᵀ with 2–32 rows (2.5× slower than W·xᵀ at 4 rows on a
    /// 512 × 32000 head), while one row goes to a matrix-vector product either way.
    /// </summary>
    public static Tensor Linear(Tensor input, Tensor weight, Tensor? bias)
    {
        long inFeatures = weight.shape[1], rows = input.numel() / Math.Max(1, inFeatures);
        if (rows is < 2 or > 32 || input.device_type != DeviceType.CPU) return nn.functional.linear(input, weight, bias);
        Tensor product = weight.matmul(input.reshape(rows, inFeatures).t()).t();                     // [rows, out], transposed
        Tensor result = bias is null ? product.contiguous() : product + bias;
        return result.view([.. input.shape[..^1], weight.shape[0]]);
    }

    /// <summary>Attaches <paramref name="adapter"/> under <paramref name="name"/>; it becomes active when it is the only one.</summary>
    public void Attach(string name, LayerAdapter adapter)
    {
        AdapterNames.Check(name);
        if (adapters.Find(name) is not null) throw new InvalidOperationException($"Layer '{adapter.ModulePath}' already has an adapter named '{name}'.");
        if (Merged) throw new InvalidOperationException($"Layer '{adapter.ModulePath}' is merged; unmerge before attaching another adapter.");
        adapters.Add(name, adapter);
        if (adapters.Items.Count == 1) _active = [name];
    }

    /// <summary>Attaches <paramref name="adapter"/> as PEFT's <c>default</c> adapter.</summary>
    public void Attach(LayerAdapter adapter) => Attach(AdapterNames.Default, adapter);

    /// <summary>Removes the adapter <paramref name="name"/> without merging it.</summary>
    public LayerAdapter? Detach(string name)
    {
        LayerAdapter? adapter = adapters.Find(name);
        if (adapter is null) return null;
        if (_merged.Contains(name)) throw new InvalidOperationException($"Adapter '{name}' of '{adapter.ModulePath}' is merged; unmerge before detaching, or use MergeAndUnload.");
        adapters.Remove(name);
        _active = _active.Where(a => a != name).ToArray();
        return adapter;
    }

    /// <summary>Removes the only adapter (see <see cref="Adapter"/>) without merging it.</summary>
    public LayerAdapter? Detach() => adapters.Items.Count == 0 ? null : Detach(adapters.Items.Count == 1 ? adapters.Items[0].Key : _active.Single());

    /// <summary>
    /// Folds the active adapters into <see cref="weight"/>, in order. With <paramref name="safe"/> each merged weight is
    /// built in a copy and checked for NaN / infinity before the live weight is touched.
    /// </summary>
    public void Merge(bool safe = false)
    {
        foreach (string name in _active.Where(n => !_merged.Contains(n)))
        {
            LayerAdapter adapter = adapters.Find(name)!;
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            Tensor merged = adapter.MergedWeight(weight.detach().to(ScalarType.Float32));
            if (safe && !isfinite(merged).all().item<bool>())
                throw new InvalidOperationException($"NaNs or infinities detected in the merged weight of '{adapter.ModulePath}' (adapter '{name}'); the adapter seems to be broken. The base weight was left unchanged.");
            weight.copy_(merged.to(weight.dtype));
            _merged.Add(name);
        }
    }

    /// <summary>Restores the base weight from the merged one, last merged first (Bat through the inverse of I + B).</summary>
    public void Unmerge()
    {
        while (_merged.Count > 0)
        {
            string name = _merged[^1];
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            Tensor restored = adapters.Find(name)!.UnmergedWeight(weight.detach().to(ScalarType.Float32));
            weight.copy_(restored.to(weight.dtype));
            _merged.RemoveAt(_merged.Count - 1);
        }
    }

    /// <summary>Merges the active adapters for good and removes every adapter; the layer becomes a plain linear layer.</summary>
    public void MergeAndUnload(bool safe = false)
    {
        Merge(safe);
        _merged.Clear();
        foreach (string name in adapters.Items.Select(a => a.Key).ToList()) adapters.Remove(name);
        _active = [];
    }

    private List<LayerAdapter> ActiveList() => _active.Select(n => adapters.Find(n)!).ToList();

    /// <summary>The named adapters of one layer, registered as child modules so they move, save and train with it.</summary>
    private sealed class AdapterSet() : nn.Module(nameof(AdapterSet))
    {
        private readonly List<KeyValuePair<string, LayerAdapter>> _items = [];

        public IReadOnlyList<KeyValuePair<string, LayerAdapter>> Items => _items;

        public LayerAdapter? Find(string name) => _items.FirstOrDefault(p => p.Key == name).Value;

        public void Add(string name, LayerAdapter adapter)
        {
            register_module(name, adapter);
            _items.Add(new(name, adapter));
        }

        public void Remove(string name)
        {
            register_module(name, null!);
            _items.RemoveAll(p => p.Key == name);
        }
    }
}

/// <summary>Rules for adapter names.</summary>
public static class AdapterNames
{
    /// <summary>PEFT's name for the first adapter.</summary>
    public const string Default = "default";

    /// <summary>Throws unless <paramref name="name"/> is letters, digits, '_' or '-'.</summary>
    public static void Check(string name)
    {
        if (string.IsNullOrEmpty(name) || !name.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
            throw new ArgumentException($"Adapter name '{name}' must be letters, digits, '_' or '-'.", nameof(name));
    }
}
