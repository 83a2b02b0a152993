using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Models.Rwkv6;

/// <summary>
/// The recurrent state of RWKV-6 after some tokens, per layer: the time-mix token shift (last LN1 output, [B, C]),
/// the WKV state ([B, H, N, N], [key][value], float32) and the channel-mix token shift ([B, C]). It replaces the
/// key/value cache: memory stays the same however long the input, a long input can be fed chunk by chunk, and a
/// conversation's state can be kept (<see cref="Clone"/>), saved and resumed. Layers not yet run are null (zero).
/// </summary>
public sealed class Rwkv6State : IGenerationCache
{
    private readonly Tensor?[] _attShift, _wkv, _ffnShift;

    /// <summary>An empty (all-zero) state for <paramref name="layers"/> layers.</summary>
    public Rwkv6State(int layers)
    {
        _attShift = new Tensor?[layers];
        _wkv = new Tensor?[layers];
        _ffnShift = new Tensor?[layers];
    }

    /// <summary>Number of layers.</summary>
    public int Layers => _wkv.Length;

    /// <inheritdoc/>
    public long Length { get; private set; }

    /// <summary>The time-mix shift of <paramref name="layer"/> ([B, C]), or null before the first token.</summary>
    public Tensor? AttentionShift(int layer) => _attShift[layer];

    /// <summary>The WKV state of <paramref name="layer"/> ([B, H, N, N], float32), or null before the first token.</summary>
    public Tensor? Wkv(int layer) => _wkv[layer];

    /// <summary>The channel-mix shift of <paramref name="layer"/> ([B, C]), or null before the first token.</summary>
    public Tensor? FeedForwardShift(int layer) => _ffnShift[layer];

    /// <summary>Stores <paramref name="layer"/>'s state after a step (the tensors are detached from dispose scopes and from autograd).</summary>
    public void Update(int layer, Tensor attShift, Tensor wkv, Tensor ffnShift)
    {
        Set(_attShift, layer, attShift);
        Set(_wkv, layer, wkv);
        Set(_ffnShift, layer, ffnShift);
    }

    /// <summary>Records that <paramref name="tokens"/> more tokens were consumed.</summary>
    public void Advance(long tokens) => Length += tokens;

    /// <inheritdoc/>
    public void Select(Tensor rows)
    {
        foreach (var slots in new[] { _attShift, _wkv, _ffnShift })
            for (int i = 0; i < slots.Length; i++)
                if (slots[i] is { } t) Set(slots, i, t.index_select(0, rows));
    }

    /// <summary>An independent copy (to branch a conversation, or keep a prompt's state and reuse it).</summary>
    public Rwkv6State Clone()
    {
        var copy = new Rwkv6State(Layers) { Length = Length };
        for (int i = 0; i < Layers; i++)
        {
            copy._attShift[i] = _attShift[i]?.clone().DetachFromDisposeScope();
            copy._wkv[i] = _wkv[i]?.clone().DetachFromDisposeScope();
            copy._ffnShift[i] = _ffnShift[i]?.clone().DetachFromDisposeScope();
        }
        return copy;
    }

    /// <summary>
    /// The state of batch row <paramref name="row"/> in rwkv.cpp's flat float32 layout: per layer the channel-mix
    /// shift (C), the time-mix shift (C), then the WKV state (H·N·N, [h][key][value]); (2 + N)·C floats per layer.
    /// </summary>
    public float[] ToFlat(Rwkv6Config config, int row = 0)
    {
        int c = config.HiddenSize, a = config.AttentionHiddenSize, heads = config.NumHeads, n = config.HeadSize;
        var flat = new float[Layers * (2L * c + (long)heads * n * n)];
        long at = 0;
        for (int i = 0; i < Layers; i++)
        {
            Copy(_ffnShift[i], c);
            Copy(_attShift[i], c);
            Copy(_wkv[i], heads * n * n);
        }
        return flat;

        void Copy(Tensor? t, long count)
        {
            if (t is not null)
            {
                float[] values = t.select(0, row).to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
                if (values.Length != count) throw new InvalidOperationException($"state tensor has {values.Length} values, expected {count}");
                values.CopyTo(flat, at);
            }
            at += count;
        }
    }

    /// <summary>A one-row state from rwkv.cpp's flat layout (see <see cref="ToFlat"/>).</summary>
    public static Rwkv6State FromFlat(Rwkv6Config config, ReadOnlySpan<float> flat, Device? device = null, ScalarType dtype = ScalarType.Float32)
    {
        int c = config.HiddenSize, heads = config.NumHeads, n = config.HeadSize;
        long perLayer = 2L * c + (long)heads * n * n;
        if (flat.Length != perLayer * config.NumHiddenLayers)
            throw new ArgumentException($"An RWKV-6 state of this model has {perLayer * config.NumHiddenLayers} floats ({config.NumHiddenLayers} layers × {perLayer}), got {flat.Length}.", nameof(flat));
        var state = new Rwkv6State(config.NumHiddenLayers);
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            ReadOnlySpan<float> layer = flat.Slice((int)(i * perLayer), (int)perLayer);
            Tensor ffn = tensor(layer[..c].ToArray(), [1, c], dtype: ScalarType.Float32).to(dtype, device ?? CPU);
            Tensor att = tensor(layer.Slice(c, c).ToArray(), [1, c], dtype: ScalarType.Float32).to(dtype, device ?? CPU);
            Tensor wkv = tensor(layer[(2 * c)..].ToArray(), [1, heads, n, n], dtype: ScalarType.Float32).to(device ?? CPU);
            state.Update(i, att, wkv, ffn);
        }
        return state;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var slots in new[] { _attShift, _wkv, _ffnShift })
            for (int i = 0; i < slots.Length; i++)
            {
                slots[i]?.Dispose();
                slots[i] = null;
            }
    }

    private static void Set(Tensor?[] slots, int layer, Tensor value)
    {
        Tensor kept = value.detach().DetachFromDisposeScope();
        slots[layer]?.Dispose();
        slots[layer] = kept;
    }
}
