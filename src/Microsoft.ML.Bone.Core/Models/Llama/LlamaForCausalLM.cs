using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.IO;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Models.Llama;

// LLaMA as Hugging Face transformers implements it, field names equal to the checkpoint keys. Every projection is an
// AdaptableLinear so adapters can be injected by PEFT module names (q_proj … down_proj).

/// <summary>LLaMA decoder with the language-model head.</summary>
public sealed class LlamaForCausalLM : nn.Module<Tensor, Tensor>
{
    /// <summary>The decoder.</summary>
    public readonly LlamaModel model;

    /// <summary>The output projection; null when tied to the token embeddings.</summary>
    public readonly AdaptableLinear? lm_head;

    /// <summary>Builds the model with transformers' initialisation (N(0, 0.02) weights).</summary>
    public LlamaForCausalLM(LlamaConfig config) : base(nameof(LlamaForCausalLM))
    {
        Config = config;
        model = new LlamaModel(config);
        if (!config.TieWordEmbeddings) lm_head = new AdaptableLinear(config.HiddenSize, config.VocabSize, hasBias: false);
        RegisterComponents();
        using var noGrad = no_grad();
        foreach (var (name, p) in named_parameters())
            if (p.ndim == 2) nn.init.normal_(p, 0, 0.02);
    }

    /// <summary>The configuration.</summary>
    public LlamaConfig Config { get; }

    /// <summary>Logits [B, T, V] for ids [B, T] with no padding and no cache.</summary>
    public override Tensor forward(Tensor inputIds) => Forward(inputIds);

    /// <summary>
    /// Logits [B, T, V]. <paramref name="attentionMask"/> [B, past + T] marks real tokens (1) and padding (0);
    /// <paramref name="positionIds"/> [B, T] default to past … past + T − 1; <paramref name="cache"/> receives this
    /// step's keys and values.
    /// </summary>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null)
    {
        Tensor hidden = model.Forward(inputIds, attentionMask, positionIds, cache);
        return lm_head is null ? nn.functional.linear(hidden, model.embed_tokens.weight!) : lm_head.call(hidden);
    }

    /// <summary>
    /// Loads a Hugging Face <c>LlamaForCausalLM</c> (or bare <c>LlamaModel</c>) directory, single file or sharded.
    /// Weights keep <paramref name="dtype"/>; pass null to keep the checkpoint's own.
    /// </summary>
    public static LlamaForCausalLM FromPretrained(string directory, ScalarType? dtype = ScalarType.Float32, Device? device = null)
    {
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: model directory not found.");
        LlamaConfig config = LlamaConfig.Load(directory);
        using var checkpoint = SafetensorsCheckpoint.Open(directory);
        bool bare = !checkpoint.Contains("model.embed_tokens.weight") && checkpoint.Contains("embed_tokens.weight");
        ScalarType target = dtype ?? checkpoint.Entry(bare ? "embed_tokens.weight" : "model.embed_tokens.weight").DType.ToScalarType();
        var model = new LlamaForCausalLM(config);
        if (target != ScalarType.Float32) model.to(target);
        ModuleWeights.Load(model, checkpoint, name => bare && name.StartsWith("model.", StringComparison.Ordinal) ? name["model.".Length..] : name);
        if (device is not null) model.to(device);
        model.eval();
        return model;
    }

    /// <summary>Writes <c>config.json</c> and <c>model.safetensors</c> (HF names) to <paramref name="directory"/>.</summary>
    public void SaveConfigAndWeights(string directory)
    {
        Directory.CreateDirectory(directory);
        AtomicFile.Write(Path.Combine(directory, "config.json"), s => s.Write(System.Text.Encoding.UTF8.GetBytes(Config.ToJson())));
        ModuleWeights.Save(this, Path.Combine(directory, SafetensorsCheckpoint.SingleFileName));
    }
}

/// <summary>Token embeddings, decoder layers and the final RMSNorm.</summary>
public sealed class LlamaModel : nn.Module<Tensor, Tensor>
{
    /// <summary>Token embeddings.</summary>
    public readonly Embedding embed_tokens;
    /// <summary>The layers.</summary>
    public readonly ModuleList<LlamaDecoderLayer> layers;
    /// <summary>Final normalisation.</summary>
    public readonly LlamaRMSNorm norm;
    private readonly LlamaConfig _config;

    /// <summary>Builds the decoder.</summary>
    public LlamaModel(LlamaConfig config) : base(nameof(LlamaModel))
    {
        _config = config;
        embed_tokens = nn.Embedding(config.VocabSize, config.HiddenSize);
        layers = new ModuleList<LlamaDecoderLayer>(Enumerable.Range(0, config.NumHiddenLayers).Select(i => new LlamaDecoderLayer(config, i)).ToArray());
        norm = new LlamaRMSNorm(config.HiddenSize, config.RmsNormEps);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor inputIds) => Forward(inputIds);

    /// <summary>Final hidden states [B, T, H]; see <see cref="LlamaForCausalLM.Forward"/>.</summary>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, KeyValueCache? cache = null)
    {
        long b = inputIds.shape[0], t = inputIds.shape[1], past = cache?.Length ?? 0;
        Tensor hidden = embed_tokens.call(inputIds);
        positionIds ??= arange(past, past + t, dtype: ScalarType.Int64, device: inputIds.device).unsqueeze(0).expand(b, t);
        var (cos, sin) = RotaryEmbedding.CosSin(_config, positionIds, hidden.dtype);
        Tensor mask = CausalMask(b, t, past, attentionMask, hidden.dtype, inputIds.device);
        for (int i = 0; i < layers.Count; i++) hidden = layers[i].Forward(hidden, cos, sin, mask, cache);
        return norm.call(hidden);
    }

    // allowed(i, j) ⇔ j ≤ past + i and attention_mask[j] = 1; additive 0 / most negative value, [B, 1, T, past + T].
    private static Tensor CausalMask(long b, long t, long past, Tensor? attentionMask, ScalarType dtype, Device device)
    {
        long s = past + t;
        Tensor query = arange(past, s, device: device).unsqueeze(1);
        Tensor key = arange(0, s, device: device).unsqueeze(0);
        Tensor allowed = key.le(query).unsqueeze(0).unsqueeze(0).expand(b, 1, t, s);
        if (attentionMask is not null) allowed = allowed.logical_and(attentionMask.to(ScalarType.Bool).unsqueeze(1).unsqueeze(2));
        return zeros([b, 1, t, s], dtype: dtype, device: device).masked_fill(allowed.logical_not(), torch.finfo(dtype).min);
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
    public LlamaDecoderLayer(LlamaConfig config, int index) : base(nameof(LlamaDecoderLayer))
    {
        input_layernorm = new LlamaRMSNorm(config.HiddenSize, config.RmsNormEps);
        self_attn = new LlamaAttention(config, index);
        post_attention_layernorm = new LlamaRMSNorm(config.HiddenSize, config.RmsNormEps);
        mlp = new LlamaMLP(config);
        RegisterComponents();
    }

    /// <summary>The block's output.</summary>
    public Tensor Forward(Tensor hidden, Tensor cos, Tensor sin, Tensor mask, KeyValueCache? cache)
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
    public LlamaAttention(LlamaConfig config, int layer) : base(nameof(LlamaAttention))
    {
        (_heads, _kvHeads, _headDim, _layer) = (config.NumAttentionHeads, config.NumKeyValueHeads, config.HeadDim, layer);
        q_proj = new AdaptableLinear(config.HiddenSize, _heads * _headDim, config.AttentionBias);
        k_proj = new AdaptableLinear(config.HiddenSize, _kvHeads * _headDim, config.AttentionBias);
        v_proj = new AdaptableLinear(config.HiddenSize, _kvHeads * _headDim, config.AttentionBias);
        o_proj = new AdaptableLinear(_heads * _headDim, config.HiddenSize, config.AttentionBias);
        RegisterComponents();
    }

    /// <summary>Attention output [B, T, H].</summary>
    public Tensor Forward(Tensor hidden, Tensor cos, Tensor sin, Tensor mask, KeyValueCache? cache)
    {
        long b = hidden.shape[0], t = hidden.shape[1];
        Tensor q = q_proj.call(hidden).view(b, t, _heads, _headDim).transpose(1, 2);
        Tensor k = k_proj.call(hidden).view(b, t, _kvHeads, _headDim).transpose(1, 2);
        Tensor v = v_proj.call(hidden).view(b, t, _kvHeads, _headDim).transpose(1, 2);
        q = RotaryEmbedding.Apply(q, cos, sin);
        k = RotaryEmbedding.Apply(k, cos, sin);
        if (cache is not null) (k, v) = cache.Append(_layer, k, v);
        // Query head h reads key/value head h / (heads / kv_heads).
        int groups = _heads / _kvHeads;
        if (groups > 1)
        {
            k = k.repeat_interleave(groups, 1);
            v = v.repeat_interleave(groups, 1);
        }
        Tensor scores = q.matmul(k.transpose(2, 3)) * (1 / Math.Sqrt(_headDim)) + mask;
        Tensor probabilities = scores.to(ScalarType.Float32).softmax(-1).to(q.dtype);
        Tensor context = probabilities.matmul(v).transpose(1, 2).reshape(b, t, _heads * _headDim);
        return o_proj.call(context);
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
    public LlamaMLP(LlamaConfig config) : base(nameof(LlamaMLP))
    {
        gate_proj = new AdaptableLinear(config.HiddenSize, config.IntermediateSize, config.MlpBias);
        up_proj = new AdaptableLinear(config.HiddenSize, config.IntermediateSize, config.MlpBias);
        down_proj = new AdaptableLinear(config.IntermediateSize, config.HiddenSize, config.MlpBias);
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
    public LlamaRMSNorm(int size, double eps) : base(nameof(LlamaRMSNorm))
    {
        weight = new Parameter(ones(size));
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
