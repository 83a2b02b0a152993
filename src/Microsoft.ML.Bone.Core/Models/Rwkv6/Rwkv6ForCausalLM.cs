using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Nn;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Models.Rwkv6;

// RWKV-6 "Finch" (x060) as RWKV-LM's RWKV_Tmix_x060 / RWKV_CMix_x060 compute it, with the module tree and parameter
// names of the Hugging Face RWKV6 layout (rwkv.blocks.N.attention.*, feed_forward.*, pre_ln) and the parameter shapes
// of the BlinkDL .pth files, so every format loads by renaming alone (see Rwkv6Checkpoint). The eight projections of
// each block are AdaptableLinear layers, adapted by PEFT module names (attention.key, feed_forward.value, …).

/// <summary>RWKV-6 with its language-model head.</summary>
public sealed class Rwkv6ForCausalLM : nn.Module<Tensor, Tensor>, ICausalLanguageModel, Adapters.StateTuning.IStateTunableModel
{
    /// <summary>Embeddings, blocks and the final LayerNorm.</summary>
    public readonly Rwkv6Model rwkv;

    /// <summary>The output projection [V, C] (never tied).</summary>
    public readonly AdaptableLinear head;

    /// <summary>Builds the model; with the default placement weights get small random values (for tests and from-scratch runs).</summary>
    public Rwkv6ForCausalLM(Rwkv6Config config, ParameterPlacement? placement = null) : base(nameof(Rwkv6ForCausalLM))
    {
        placement ??= ParameterPlacement.Default;
        Config = config;
        rwkv = new Rwkv6Model(config, placement);
        head = new AdaptableLinear(config.HiddenSize, config.VocabSize, hasBias: false, placement: placement, std: 0.02);
        RegisterComponents();
    }

    /// <summary>The configuration.</summary>
    public Rwkv6Config Config { get; }

    /// <inheritdoc/>
    public nn.Module Module => this;

    /// <inheritdoc/>
    public string ModelType => Rwkv6Config.ModelType;

    /// <inheritdoc/>
    public IReadOnlyList<string> DefaultTargetModules => Rwkv6Config.AllLinears;

    /// <inheritdoc/>
    public int VocabSize => Config.VocabSize;

    /// <summary>RWKV has no positions: any length runs (the state is constant-size); <see cref="Rwkv6Config.ContextLength"/> is what it was trained for.</summary>
    public int MaxSequenceLength => int.MaxValue;

    /// <inheritdoc/>
    public IReadOnlyList<int> EosTokenIds => Config.EosTokenId is { } eos ? [eos] : [];

    /// <summary>RWKV uses no beginning-of-sequence token.</summary>
    public int? BosTokenId => null;

    /// <inheritdoc/>
    public bool GradientCheckpointing { get => rwkv.GradientCheckpointing; set => rwkv.GradientCheckpointing = value; }

    /// <summary>RWKV has no attention to choose an implementation for; setting it is accepted and ignored.</summary>
    public AttentionImplementation Attention { get; set; } = AttentionImplementation.Sdpa;

    /// <summary>How the WKV recurrence runs (chunked for sequences by default).</summary>
    public WkvImplementation Wkv { get => rwkv.Wkv; set => rwkv.Wkv = value; }

    /// <summary>Logits [B, T, V] for ids [B, T] from the zero state.</summary>
    public override Tensor forward(Tensor inputIds) => Forward(inputIds);

    /// <summary>
    /// Logits [B, T', V]. <paramref name="attentionMask"/> [B, past + T] marks real tokens: padding (left, as batched
    /// generation pads) is zeroed at every mixer's input, so a padded row computes what it would alone. Positions are
    /// ignored. <paramref name="cache"/> is an <see cref="Rwkv6State"/>: read as the starting state and updated in place.
    /// </summary>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask = null, Tensor? positionIds = null, IGenerationCache? cache = null, int logitsToKeep = 0)
    {
        if (cache is not null and not Rwkv6State) throw new ArgumentException("An RWKV-6 model needs the state from its own NewCache().", nameof(cache));
        Tensor hidden = rwkv.Forward(inputIds, attentionMask, (Rwkv6State?)cache);
        if (logitsToKeep > 0 && logitsToKeep < hidden.shape[1]) hidden = hidden.narrow(1, hidden.shape[1] - logitsToKeep, logitsToKeep);
        return head.call(hidden);
    }

    /// <summary>Logits for <paramref name="inputIds"/> continuing from <paramref name="state"/>, which is updated in place (streaming, resumable conversations).</summary>
    public Tensor Forward(Tensor inputIds, Rwkv6State state, int logitsToKeep = 0) => Forward(inputIds, null, null, state, logitsToKeep);

    /// <inheritdoc/>
    public IGenerationCache NewCache() => NewState();

    /// <summary>An empty (zero, or the tuned initial) state.</summary>
    public Rwkv6State NewState() => new(Config.NumHiddenLayers);

    /// <summary>
    /// Adds a trainable initial WKV state per layer (RWKV-PEFT's state tuning: <c>time_state</c>, [H, N, N] per
    /// layer, zero at first, float32), used whenever a sequence starts from the zero state. Returns the parameters.
    /// </summary>
    public IReadOnlyList<Parameter> EnableStateTuning() => rwkv.blocks.Select(b => b.attention.EnableStateTuning()).ToList();

    /// <inheritdoc/>
    public string ConfigJson() => Config.ToJson();

    /// <summary>Loads RWKV-6 from a Hugging Face directory, a BlinkDL <c>.pth</c> or an rwkv.cpp <c>.bin</c> (see <see cref="Rwkv6Checkpoint"/>).</summary>
    public static Rwkv6ForCausalLM FromPretrained(string path, ModelLoadOptions? options = null) => Rwkv6Checkpoint.Load(path, options);

    /// <inheritdoc/>
    public void SaveConfigAndWeights(string directory, WeightTransform? transform = null)
    {
        Directory.CreateDirectory(directory);
        AtomicFile.Write(Path.Combine(directory, "config.json"), s => s.Write(System.Text.Encoding.UTF8.GetBytes(Config.ToJson())));
        ModuleWeights.Save(this, Path.Combine(directory, SafetensorsCheckpoint.SingleFileName), transform: transform);
    }
}

/// <summary>Embeddings, the blocks and the final LayerNorm.</summary>
public sealed class Rwkv6Model : nn.Module<Tensor, Tensor>
{
    /// <summary>Token embeddings.</summary>
    public readonly Nn.Embedding embeddings;
    /// <summary>The blocks.</summary>
    public readonly ModuleList<Rwkv6Block> blocks;
    /// <summary>Final LayerNorm.</summary>
    public readonly Nn.LayerNorm ln_out;

    /// <summary>Builds the layers.</summary>
    public Rwkv6Model(Rwkv6Config config, ParameterPlacement placement) : base(nameof(Rwkv6Model))
    {
        embeddings = new Nn.Embedding(config.VocabSize, config.HiddenSize, placement, std: 1e-4);
        blocks = new ModuleList<Rwkv6Block>(Enumerable.Range(0, config.NumHiddenLayers).Select(i => new Rwkv6Block(config, i, placement)).ToArray());
        ln_out = new Nn.LayerNorm(config.HiddenSize, config.LayerNormEpsilon, placement);
        RegisterComponents();
    }

    /// <summary>Recompute each block in the backward pass (training, no state).</summary>
    public bool GradientCheckpointing { get; set; }

    /// <summary>How the WKV recurrence runs.</summary>
    public WkvImplementation Wkv { get; set; }

    /// <inheritdoc/>
    public override Tensor forward(Tensor inputIds) => Forward(inputIds, null, null);

    /// <summary>Final hidden states [B, T, C].</summary>
    public Tensor Forward(Tensor inputIds, Tensor? attentionMask, Rwkv6State? state)
    {
        long t = inputIds.shape[1];
        Tensor hidden = embeddings.call(inputIds);
        // The mask of this call's tokens, [B, T, 1] in the model's dtype; null when every token is real.
        Tensor? current = attentionMask?.narrow(1, attentionMask.shape[1] - t, t);
        Tensor? mask = current is null || current.min().to(ScalarType.Float64).item<double>() == 1 ? null : current.to(hidden.dtype).unsqueeze(-1);
        bool checkpoint = GradientCheckpointing && training && is_grad_enabled() && state is null;
        for (int i = 0; i < blocks.Count; i++)
        {
            Rwkv6Block block = blocks[i];
            Tensor input = hidden;
            hidden = checkpoint
                ? GradientCheckpoint.Run(block, input, h => block.Forward(h, mask, null, i, Wkv))
                : Scoped.Run(() => block.Forward(input, mask, state, i, Wkv));
        }
        state?.Advance(t);
        return ln_out.call(hidden);
    }
}

/// <summary>One block: x + TimeMix(LN1(x)), then x + ChannelMix(LN2(x)); block 0 first applies <c>pre_ln</c> (BlinkDL's ln0).</summary>
public sealed class Rwkv6Block : nn.Module
{
    /// <summary>LayerNorm after the embedding (block 0 only).</summary>
    public readonly Nn.LayerNorm? pre_ln;
    /// <summary>Norm before the time mix.</summary>
    public readonly Nn.LayerNorm ln1;
    /// <summary>Norm before the channel mix.</summary>
    public readonly Nn.LayerNorm ln2;
    /// <summary>Time mix (BlinkDL <c>att</c>).</summary>
    public readonly Rwkv6TimeMix attention;
    /// <summary>Channel mix (BlinkDL <c>ffn</c>).</summary>
    public readonly Rwkv6ChannelMix feed_forward;

    /// <summary>Builds block <paramref name="index"/>.</summary>
    public Rwkv6Block(Rwkv6Config config, int index, ParameterPlacement placement) : base(nameof(Rwkv6Block))
    {
        if (index == 0) pre_ln = new Nn.LayerNorm(config.HiddenSize, config.LayerNormEpsilon, placement);
        ln1 = new Nn.LayerNorm(config.HiddenSize, config.LayerNormEpsilon, placement);
        ln2 = new Nn.LayerNorm(config.HiddenSize, config.LayerNormEpsilon, placement);
        attention = new Rwkv6TimeMix(config, placement);
        feed_forward = new Rwkv6ChannelMix(config, placement);
        RegisterComponents();
    }

    /// <summary>The block's output; reads and updates <paramref name="state"/>'s layer <paramref name="layer"/> when given.</summary>
    public Tensor Forward(Tensor x, Tensor? mask, Rwkv6State? state, int layer, WkvImplementation wkv)
    {
        if (pre_ln is not null) x = pre_ln.call(x);
        Tensor xa = ln1.call(x);
        if (mask is not null) xa = xa * mask;
        var (mixed, attShift, wkvState) = attention.Forward(xa, mask, state?.AttentionShift(layer), state?.Wkv(layer), wkv);
        x = x + mixed;
        Tensor xf = ln2.call(x);
        if (mask is not null) xf = xf * mask;
        var (channel, ffnShift) = feed_forward.Forward(xf, state?.FeedForwardShift(layer));
        state?.Update(layer, attShift, wkvState, ffnShift);
        return x + channel;
    }
}

/// <summary>
/// RWKV-6 time mix: data-dependent token shift (ddlerp through the 5-way LoRA <c>time_maa_w1/w2</c>, order w, k, v,
/// r, g), data-dependent decay w = exp(−exp(time_decay + tanh(x_w·Dw1)·Dw2)), the WKV-6 recurrence with bonus u
/// (<c>time_faaaa</c>), GroupNorm per head (<c>ln_x</c>) and the SiLU gate.
/// </summary>
public sealed class Rwkv6TimeMix : nn.Module
{
    /// <summary>Static lerp weights [1, 1, C] of the ddlerp input and of w, k, v, r, g.</summary>
    public readonly Parameter time_maa_x, time_maa_w, time_maa_k, time_maa_v, time_maa_r, time_maa_g;
    /// <summary>Token-shift LoRA: [C, 5·Dm] and [5, Dm, C] (used as x·W).</summary>
    public readonly Parameter time_maa_w1, time_maa_w2;
    /// <summary>Decay base [1, 1, A] and its LoRA [C, Dd], [Dd, A].</summary>
    public readonly Parameter time_decay, time_decay_w1, time_decay_w2;
    /// <summary>The bonus u [H, N].</summary>
    public readonly Parameter time_faaaa;
    /// <summary>Projections ([out, in], no bias).</summary>
    public readonly AdaptableLinear receptance, key, value, gate, output;
    /// <summary>GroupNorm affine [A].</summary>
    public readonly Nn.LayerNorm ln_x;
    /// <summary>State tuning's trainable initial WKV state [H, N(value), N(key)] (RWKV-PEFT's layout), or null.</summary>
    public Parameter? time_state;

    private readonly Rwkv6Config _config;

    /// <summary>Builds the time mix.</summary>
    public Rwkv6TimeMix(Rwkv6Config config, ParameterPlacement placement) : base(nameof(Rwkv6TimeMix))
    {
        _config = config;
        int c = config.HiddenSize, a = config.AttentionHiddenSize, dm = config.TimeMixExtraDim, dd = config.TimeDecayExtraDim;
        Parameter Make(double scale, params long[] shape)
        {
            var p = new Parameter(placement.Empty(shape));
            if (placement.Initialize) using (no_grad()) nn.init.uniform_(p, -scale, scale);
            return p;
        }
        time_maa_x = Make(0.5, 1, 1, c); time_maa_w = Make(0.5, 1, 1, c); time_maa_k = Make(0.5, 1, 1, c);
        time_maa_v = Make(0.5, 1, 1, c); time_maa_r = Make(0.5, 1, 1, c); time_maa_g = Make(0.5, 1, 1, c);
        time_maa_w1 = Make(1e-2, c, 5 * dm); time_maa_w2 = Make(1e-2, 5, dm, c);
        time_decay = Make(1, 1, 1, a); time_decay_w1 = Make(1e-2, c, dd); time_decay_w2 = Make(1e-2, dd, a);
        time_faaaa = Make(0.5, config.NumHeads, config.HeadSize);
        receptance = new AdaptableLinear(c, a, hasBias: false, placement: placement);
        key = new AdaptableLinear(c, a, hasBias: false, placement: placement);
        value = new AdaptableLinear(c, a, hasBias: false, placement: placement);
        gate = new AdaptableLinear(c, a, hasBias: false, placement: placement);
        output = new AdaptableLinear(a, c, hasBias: false, placement: placement);
        ln_x = new Nn.LayerNorm(a, config.GroupNormEpsilon, placement);
        RegisterComponents();
    }

    /// <summary>Registers <see cref="time_state"/> (zeros, float32) if absent and returns it.</summary>
    public Parameter EnableStateTuning()
    {
        if (time_state is null)
        {
            time_state = new Parameter(zeros([_config.NumHeads, _config.HeadSize, _config.HeadSize], dtype: ScalarType.Float32, device: time_faaaa.device));
            register_parameter(nameof(time_state), time_state);
        }
        return time_state;
    }

    /// <summary>
    /// Output [B, T, C], the new shift (last input) and the new WKV state. <paramref name="x"/> is LN1's (masked)
    /// output; <paramref name="shift"/> / <paramref name="state"/> continue a sequence (null: its start).
    /// </summary>
    public (Tensor Output, Tensor Shift, Tensor State) Forward(Tensor x, Tensor? mask, Tensor? shift, Tensor? state, WkvImplementation implementation)
    {
        long b = x.shape[0], t = x.shape[1];
        int h = _config.NumHeads, n = _config.HeadSize, dm = _config.TimeMixExtraDim;
        Tensor previous = TokenShift(x, shift);
        Tensor sx = previous - x;
        Tensor xxx = x + sx * time_maa_x;
        Tensor m = xxx.matmul(time_maa_w1).tanh().view(b * t, 5, dm).transpose(0, 1).bmm(time_maa_w2).view(5, b, t, -1);   // [5, B, T, C]
        Tensor xw = x + sx * (time_maa_w + m[0]), xk = x + sx * (time_maa_k + m[1]), xv = x + sx * (time_maa_v + m[2]);
        Tensor xr = x + sx * (time_maa_r + m[3]), xg = x + sx * (time_maa_g + m[4]);

        Tensor r = receptance.call(xr), k = key.call(xk), v = value.call(xv), g = nn.functional.silu(gate.call(xg));
        if (mask is not null)
        {
            // Keeps the state clean across right padding too (left padding is already all zeros).
            k = k * mask;
            v = v * mask;
        }
        Tensor logW = -(time_decay.to(ScalarType.Float32) + xw.matmul(time_decay_w1).tanh().matmul(time_decay_w2).to(ScalarType.Float32)).exp();   // log w ≤ 0
        Tensor s0 = state ?? InitialState(b, x.device);
        var (y, s1) = Wkv6.Run(r.view(b, t, h, n), k.view(b, t, h, n), v.view(b, t, h, n), logW.view(b, t, h, n), time_faaaa, s0, implementation);
        // GroupNorm with one group per head: each head's N channels normalised on their own, then ln_x's affine.
        Tensor normed = nn.functional.layer_norm(y, [n], eps: _config.GroupNormEpsilon).reshape(b, t, h * n).to(x.dtype);
        normed = normed * ln_x.weight + ln_x.bias;
        Tensor o = output.call(normed * g);
        return (o, x.select(1, t - 1), s1);
    }

    // Zeros, or the tuned initial state transposed from RWKV-PEFT's [value][key] to [key][value].
    private Tensor InitialState(long b, Device device)
    {
        if (time_state is not null) return time_state.transpose(1, 2).unsqueeze(0).expand(b, -1, -1, -1);
        return zeros([b, _config.NumHeads, _config.HeadSize, _config.HeadSize], dtype: ScalarType.Float32, device: device);
    }

    /// <summary>x shifted one token later: the previous token's input at each position (<paramref name="shift"/> or zeros before the first).</summary>
    internal static Tensor TokenShift(Tensor x, Tensor? shift)
    {
        Tensor first = (shift ?? zeros([x.shape[0], x.shape[2]], dtype: x.dtype, device: x.device)).to(x.dtype).unsqueeze(1);
        return x.shape[1] == 1 ? first : cat([first, x.narrow(1, 0, x.shape[1] - 1)], 1);
    }
}

/// <summary>RWKV-6 channel mix: static token-shift lerp, then sigmoid(R·x_r) ⊙ V·relu(K·x_k)².</summary>
public sealed class Rwkv6ChannelMix : nn.Module
{
    /// <summary>Static lerp weights [1, 1, C].</summary>
    public readonly Parameter time_maa_k, time_maa_r;
    /// <summary>Projections: key [F, C], receptance [C, C], value [C, F].</summary>
    public readonly AdaptableLinear key, receptance, value;

    /// <summary>Builds the channel mix.</summary>
    public Rwkv6ChannelMix(Rwkv6Config config, ParameterPlacement placement) : base(nameof(Rwkv6ChannelMix))
    {
        int c = config.HiddenSize, f = config.IntermediateSize;
        time_maa_k = new Parameter(placement.Empty(1, 1, c));
        time_maa_r = new Parameter(placement.Empty(1, 1, c));
        if (placement.Initialize)
            using (no_grad())
            {
                nn.init.uniform_(time_maa_k, 0, 1);
                nn.init.uniform_(time_maa_r, 0, 1);
            }
        key = new AdaptableLinear(c, f, hasBias: false, placement: placement);
        receptance = new AdaptableLinear(c, c, hasBias: false, placement: placement);
        value = new AdaptableLinear(f, c, hasBias: false, placement: placement);
        RegisterComponents();
    }

    /// <summary>Output [B, T, C] and the new shift (the last input).</summary>
    public (Tensor Output, Tensor Shift) Forward(Tensor x, Tensor? shift)
    {
        Tensor sx = Rwkv6TimeMix.TokenShift(x, shift) - x;
        Tensor xk = x + sx * time_maa_k, xr = x + sx * time_maa_r;
        Tensor k = nn.functional.relu(key.call(xk)).square();
        return (receptance.call(xr).sigmoid() * value.call(k), x.select(1, x.shape[1] - 1));
    }
}
