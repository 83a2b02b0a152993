using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Models.Llama;

/// <summary>Keys and values of every layer for the tokens seen so far ([B, kv_heads, S, head_dim] each).</summary>
public sealed class KeyValueCache : IGenerationCache
{
    private readonly Tensor?[] _keys, _values;

    /// <summary>An empty cache for <paramref name="layers"/> layers.</summary>
    public KeyValueCache(int layers)
    {
        _keys = new Tensor?[layers];
        _values = new Tensor?[layers];
    }

    /// <summary>Tokens cached so far.</summary>
    public long Length => _keys[0]?.shape[2] ?? 0;

    /// <summary>Appends this step's keys and values for <paramref name="layer"/> and returns everything cached.</summary>
    public (Tensor Keys, Tensor Values) Append(int layer, Tensor keys, Tensor values)
    {
        Tensor k = _keys[layer] is { } oldK ? cat([oldK, keys], 2) : keys.alias();
        Tensor v = _values[layer] is { } oldV ? cat([oldV, values], 2) : values.alias();
        _keys[layer]?.Dispose();
        _values[layer]?.Dispose();
        _keys[layer] = k.DetachFromDisposeScope();
        _values[layer] = v.DetachFromDisposeScope();
        return (k, v);
    }

    /// <summary>Keeps only the rows in <paramref name="rows"/> (batched generation dropping finished sequences).</summary>
    public void Select(Tensor rows)
    {
        for (int i = 0; i < _keys.Length; i++)
        {
            if (_keys[i] is null) continue;
            Tensor k = _keys[i]!.index_select(0, rows).DetachFromDisposeScope(), v = _values[i]!.index_select(0, rows).DetachFromDisposeScope();
            _keys[i]!.Dispose();
            _values[i]!.Dispose();
            (_keys[i], _values[i]) = (k, v);
        }
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (Tensor? t in _keys.Concat(_values)) t?.Dispose();
    }
}
