using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Nn;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Models.Llama;

// The LLaMA family (LLaMA-1/2/3, Mistral, Qwen2) as Hugging Face transformers implements it, field names equal to the
// checkpoint keys. Every projection is an AdaptableLinear so adapters can be injected by PEFT module names
// (q_proj … down_proj). Attention goes through libtorch's fused scaled_dot_product_attention; the eager form stays as
// the readable reference (AttentionImplementation.Eager).

/// <summary>LLaMA-family decoder with the language-model head.</summary>
public sealed class LlamaForCausalLM : nn.Module<Tensor, Tensor>, ICausalLanguageModel
{
    /// <summary>The decoder.</summary>
    public readonly LlamaModel model;

    /// <summary>The output projection; null when tied to the token embeddings.</summary>
    public readonly AdaptableLinear? lm_head;

    /// <summary>Builds the model; with the default placement, weights get transformers' initialisation (N(0, 0.02)).</summary>
    public LlamaForCausalLM(LlamaConfig config, ParameterPlacement? placement = null) : base(nameof(LlamaForCausalLM))
    {
        placement ??= ParameterPlacement.Default;
        Config = config;
        model = new LlamaModel(config, placement);
        if (!config.TieWordEmbeddings) lm_head = new AdaptableLinear(config.HiddenSize, config.VocabSize, hasBias: false, placement: placement, std: 0.02);
        RegisterComponents();
    }

    /// <summary>The configuration.</summary>
    public LlamaConfig Config { get; }

    /// <inheritdoc/>
    public nn.Module Module => this;

    /// <inheritdoc/>
    public string ModelType => Config.ModelType;

    /// <inheritdoc/>
    public IReadOnlyList<string> DefaultTargetModules => LlamaConfig.AllProjections;

    /// <inheritdoc/>
    public int VocabSize => Config.VocabSize;

    /// <inheritdoc/>
    public int MaxSequenceLength => Config.MaxPositionEmbeddings;

    /// <inheritdoc/>
    public IReadOnlyList<int> EosTokenIds => Config.EosTokenIds;

    /// <inheritdoc/>
    public int? BosTokenId => Config.BosTokenId;

    /// <inheritdoc/>
    public bool GradientCheckpointing { get => model.GradientCheckpointing; set => model.GradientCheckpointing = value; }

    /// <inheritdoc/>
    public AttentionImplementation Attention
    {
        get => model.layers[0].self_attn.Implementation;
        set { foreach (LlamaDecoderLayer layer in model.layers) layer.self_attn.Implementation = value; }
    }

    /// <summary>Logits [B, T, V] for ids [B, T] with no padding and no cache.</summary>
    public override Tensor forward(Tensor inputIds) => Forward(inputIds);

    /// <inheritdoc/>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, IGenerationCache? cache = null, int logitsToKeep = 0)
    {
        if (cache is not null and not KeyValueCache) throw new ArgumentException($"A {ModelType} model needs the cache from its own NewCache().", nameof(cache));
        Tensor hidden = model.Forward(inputIds, attentionMask, positionIds, (KeyValueCache?)cache);   // [B, T, H]
        if (logitsToKeep > 0 && logitsToKeep < hidden.shape[1]) hidden = hidden.narrow(1, hidden.shape[1] - logitsToKeep, logitsToKeep);
        return lm_head is null ? AdaptableLinear.Linear(hidden, model.embed_tokens.weight, null) : lm_head.call(hidden);
    }

    /// <inheritdoc/>
    public IGenerationCache NewCache() => new KeyValueCache(Config.NumHiddenLayers);

    /// <inheritdoc/>
    public string ConfigJson() => Config.ToJson();

    /// <summary>
    /// Loads a Hugging Face <c>LlamaForCausalLM</c> / <c>MistralForCausalLM</c> / <c>Qwen2ForCausalLM</c> (or bare
    /// base-model) directory, single file or sharded. The configuration is checked against the checkpoint's shapes
    /// before anything is allocated; the model is then built uninitialised in the target dtype and device and each
    /// tensor is read once straight into it.
    /// </summary>
    public static LlamaForCausalLM FromPretrained(string directory, ModelLoadOptions? options = null)
    {
        options ??= ModelLoadOptions.Default;
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: model directory not found.");
        LlamaConfig config = LlamaConfig.Load(directory);
        using var checkpoint = SafetensorsCheckpoint.Open(directory);
        bool bare = !checkpoint.Contains("model.embed_tokens.weight") && checkpoint.Contains("embed_tokens.weight");
        string embeddings = bare ? "embed_tokens.weight" : "model.embed_tokens.weight";
        if (!checkpoint.Contains(embeddings)) throw new InvalidDataException($"{checkpoint.Description}: no 'model.embed_tokens.weight'; this is not a {config.ModelType} checkpoint.");
        ScalarType dtype = options.DType ?? checkpoint.Entry(embeddings).DType.ToScalarType();
        Func<string, string?> rename = name => bare && name.StartsWith("model.", StringComparison.Ordinal) ? name["model.".Length..] : name;

        using (var shapes = new LlamaForCausalLM(config, ParameterPlacement.ShapesOnly(dtype)))
            ModuleWeights.CheckShapes(shapes, checkpoint, rename);
        var loaded = new LlamaForCausalLM(config, ParameterPlacement.ForLoading(dtype, options.Device));
        try
        {
            IReadOnlyList<string> unused = ModuleWeights.Load(loaded, checkpoint, rename, fingerprint: options.Fingerprint);
            string layers = bare ? "layers." : "model.layers.";
            if (unused.FirstOrDefault(n => n.StartsWith(layers, StringComparison.Ordinal)) is { } extra)
                throw new InvalidDataException($"{checkpoint.Description}: tensor '{extra}' belongs to a layer beyond the {config.NumHiddenLayers} that config.json's num_hidden_layers gives.");
        }
        catch
        {
            loaded.Dispose();
            throw;
        }
        options.Fingerprint?.AddFile(Path.Combine(directory, "config.json"));
        loaded.eval();
        return loaded;
    }

    /// <inheritdoc/>
    public void SaveConfigAndWeights(string directory, WeightTransform? transform = null)
    {
        Directory.CreateDirectory(directory);
        AtomicFile.Write(Path.Combine(directory, "config.json"), s => s.Write(System.Text.Encoding.UTF8.GetBytes(Config.ToJson())));
        ModuleWeights.Save(this, Path.Combine(directory, SafetensorsCheckpoint.SingleFileName), transform: transform);
    }
}

/// <summary>Token embeddings, decoder layers and the final RMSNorm.</summary>
public sealed class LlamaModel : nn.Module<Tensor, Tensor>
{
    /// <summary>Token embeddings.</summary>
    public readonly Nn.Embedding embed_tokens;
    /// <summary>The layers.</summary>
    public readonly ModuleList<LlamaDecoderLayer> layers;
    /// <summary>Final normalisation.</summary>
    public readonly LlamaRMSNorm norm;
    private readonly LlamaConfig _config;

    /// <summary>Builds the decoder.</summary>
    public LlamaModel(LlamaConfig config, ParameterPlacement placement) : base(nameof(LlamaModel))
    {
        _config = config;
        embed_tokens = new Nn.Embedding(config.VocabSize, config.HiddenSize, placement, std: 0.02);
        layers = new ModuleList<LlamaDecoderLayer>(Enumerable.Range(0, config.NumHiddenLayers).Select(i => new LlamaDecoderLayer(config, i, placement)).ToArray());
        norm = new LlamaRMSNorm(config.HiddenSize, config.RmsNormEps, placement);
        RegisterComponents();
    }

    /// <summary>Recompute each decoder layer in the backward pass (training only; the cache is not used then).</summary>
    public bool GradientCheckpointing { get; set; }

    /// <inheritdoc/>
    public override Tensor forward(Tensor inputIds) => Forward(inputIds);

    /// <summary>Final hidden states [B, T, H]; see <see cref="LlamaForCausalLM.Forward"/>.</summary>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null)
    {
        long b = inputIds.shape[0], t = inputIds.shape[1], past = cache?.Length ?? 0;
        Tensor hidden = embed_tokens.call(inputIds);                                                        // [B, T, H]
        positionIds ??= arange(past, past + t, dtype: ScalarType.Int64, device: inputIds.device).unsqueeze(0).expand(b, t);
        var (cos, sin) = RotaryEmbedding.CosSin(_config, positionIds, hidden.dtype);                       // [B, 1, T, D]
        var masks = new Dictionary<int, Tensor?>();
        bool checkpoint = GradientCheckpointing && training && is_grad_enabled() && cache is null;
        for (int i = 0; i < layers.Count; i++)
        {
            int window = _config.WindowOf(i) ?? 0;
            if (!masks.TryGetValue(window, out Tensor? mask)) masks[window] = mask = Mask(b, t, past, attentionMask, window, hidden.dtype, inputIds.device);
            LlamaDecoderLayer layer = layers[i];
            Tensor input = hidden;
            hidden = checkpoint
                ? GradientCheckpoint.Run(layer, input, h => layer.Forward(h, cos, sin, mask, null))
                : Scoped.Run(() => layer.Forward(input, cos, sin, mask, cache));
        }
        return norm.call(hidden);
    }

    // Additive mask [B, 1, T, past + T]: query i (cache position past + i) may see key j when j ≤ past + i, j is a real
    // token, and (with a window) past + i − j < window. Null when plain causal attention is exactly that.
    private static Tensor? Mask(long b, long t, long past, Tensor? attentionMask, int window, ScalarType dtype, Device device)
    {
        if (attentionMask is null && window == 0 && (past == 0 || t == 1)) return null;
        long s = past + t;
        Tensor query = arange(past, s, device: device).unsqueeze(1);
        Tensor key = arange(0, s, device: device).unsqueeze(0);
        Tensor allowed = key.le(query);
        if (window > 0) allowed = allowed.logical_and((query - key).lt(window));
        allowed = allowed.unsqueeze(0).unsqueeze(0);
        if (attentionMask is not null) allowed = allowed.logical_and(attentionMask.to(ScalarType.Bool).unsqueeze(1).unsqueeze(2));
        return Nn.ScalarArguments.MaskedFill(zeros([allowed.shape[0], 1, t, s], dtype: dtype, device: device), allowed.logical_not(), torch.finfo(dtype).min);
    }
}

/// <summary>Pre-norm block: x + Attn(RMSNorm(x)), then x + MLP(RMSNorm(x)).</summary>
public sealed class LlamaDecoderLayer : nn.Module
{
    /// <summary>Norm before attention.</summary>
    public readonly LlamaRMSNorm input_layernorm;
    /// <summary>Attention.</summary>
    public readonly LlamaAttention self_attn;
    /// <summary>Norm before the MLP.</summary>
    public readonly LlamaRMSNorm post_attention_layernorm;
    /// <summary>SwiGLU MLP.</summary>
    public readonly LlamaMLP mlp;

    /// <summary>Builds layer <paramref name="index"/>.</summary>
    public LlamaDecoderLayer(LlamaConfig config, int index, ParameterPlacement placement) : base(nameof(LlamaDecoderLayer))
    {
        input_layernorm = new LlamaRMSNorm(config.HiddenSize, config.RmsNormEps, placement);
        self_attn = new LlamaAttention(config, index, placement);
        post_attention_layernorm = new LlamaRMSNorm(config.HiddenSize, config.RmsNormEps, placement);
        mlp = new LlamaMLP(config, placement);
        RegisterComponents();
    }

    /// <summary>The block's output [B, T, H].</summary>
    public Tensor Forward(Tensor hidden, Tensor cos, Tensor sin, Tensor? mask, KeyValueCache? cache)
    {
        hidden = hidden + self_attn.Forward(input_layernorm.call(hidden), cos, sin, mask, cache);
        return hidden + mlp.call(post_attention_layernorm.call(hidden));
    }
}

/// <summary>Multi-head attention with rotary positions and grouped key/value heads.</summary>
public sealed class LlamaAttention : nn.Module
{
    /// <summary>Query projection.</summary>
    public readonly AdaptableLinear q_proj;
    /// <summary>Key projection.</summary>
    public readonly AdaptableLinear k_proj;
    /// <summary>Value projection.</summary>
    public readonly AdaptableLinear v_proj;
    /// <summary>Output projection.</summary>
    public readonly AdaptableLinear o_proj;
    private readonly int _heads, _kvHeads, _headDim, _layer;

    /// <summary>Builds the projections.</summary>
    public LlamaAttention(LlamaConfig config, int layer, ParameterPlacement placement) : base(nameof(LlamaAttention))
    {
        (_heads, _kvHeads, _headDim, _layer) = (config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim, layer);
        q_proj = new AdaptableLinear(config.HiddenSize, _heads * _headDim, config.QkvBias, placement, std: 0.02);
        k_proj = new AdaptableLinear(config.HiddenSize, _kvHeads * _headDim, config.QkvBias, placement, std: 0.02);
        v_proj = new AdaptableLinear(config.HiddenSize, _kvHeads * _headDim, config.QkvBias, placement, std: 0.02);
        o_proj = new AdaptableLinear(_heads * _headDim, config.HiddenSize, config.OutputBias, placement, std: 0.02);
        RegisterComponents();
    }

    /// <summary>Fused (default) or eager attention.</summary>
    public AttentionImplementation Implementation { get; set; }

    /// <summary>Attention output [B, T, H].</summary>
    public Tensor Forward(Tensor hidden, Tensor cos, Tensor sin, Tensor? mask, KeyValueCache? cache)
    {
        long b = hidden.shape[0], t = hidden.shape[1];
        Tensor q = q_proj.call(hidden).view(b, t, _heads, _headDim).transpose(1, 2);     // [B, H, T, D]
        Tensor k = k_proj.call(hidden).view(b, t, _kvHeads, _headDim).transpose(1, 2);   // [B, KV, T, D]
        Tensor v = v_proj.call(hidden).view(b, t, _kvHeads, _headDim).transpose(1, 2);   // [B, KV, T, D]
        q = RotaryEmbedding.Apply(q, cos, sin);
        k = RotaryEmbedding.Apply(k, cos, sin);
        if (cache is not null) (k, v) = cache.Append(_layer, k, v);                      // [B, KV, S, D]
        // Query head h reads key/value head h / (heads / kv_heads).
        int groups = _heads / _kvHeads;
        if (groups > 1)
        {
            k = k.repeat_interleave(groups, 1);
            v = v.repeat_interleave(groups, 1);
        }
        Tensor context = Nn.Attention.Compute(Implementation, q, k, v, mask, causal: t > 1);  // [B, H, T, D]
        return o_proj.call(context.transpose(1, 2).reshape(b, t, _heads * _headDim));
    }
}

/// <summary>down(silu(gate(x)) ⊙ up(x)).</summary>
public sealed class LlamaMLP : nn.Module<Tensor, Tensor>
{
    /// <summary>Gate projection.</summary>
    public readonly AdaptableLinear gate_proj;
    /// <summary>Up projection.</summary>
    public readonly AdaptableLinear up_proj;
    /// <summary>Down projection.</summary>
    public readonly AdaptableLinear down_proj;

    /// <summary>Builds the MLP.</summary>
    public LlamaMLP(LlamaConfig config, ParameterPlacement placement) : base(nameof(LlamaMLP))
    {
        gate_proj = new AdaptableLinear(config.HiddenSize, config.IntermediateSize, config.MlpBias, placement, std: 0.02);
        up_proj = new AdaptableLinear(config.HiddenSize, config.IntermediateSize, config.MlpBias, placement, std: 0.02);
        down_proj = new AdaptableLinear(config.IntermediateSize, config.HiddenSize, config.MlpBias, placement, std: 0.02);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x) => down_proj.call(nn.functional.silu(gate_proj.call(x)) * up_proj.call(x));
}

/// <summary>w ⊙ x / √(mean(x²) + ε), normalised in float32 and cast back before the gain, as transformers does.</summary>
public sealed class LlamaRMSNorm : nn.Module<Tensor, Tensor>
{
    /// <summary>The gain.</summary>
    public readonly Parameter weight;
    private readonly double _eps;

    /// <summary>Builds the norm with unit gain.</summary>
    public LlamaRMSNorm(int size, double eps, ParameterPlacement placement) : base(nameof(LlamaRMSNorm))
    {
        weight = new Parameter(placement.Empty(size));
        if (placement.Initialize) using (no_grad()) weight.fill_(1);
        _eps = eps;
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor x)
    {
        Tensor x32 = x.to(ScalarType.Float32);
        Tensor normed = x32 * (x32.pow(2).mean([-1], keepdim: true) + _eps).rsqrt();
        return weight * normed.to(x.dtype);
    }
}
