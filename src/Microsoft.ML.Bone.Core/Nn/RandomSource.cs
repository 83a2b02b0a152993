using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Nn;

/// <summary>
/// The random stream of a model's dropout layers. Each training run seeds its own, so two runs in one process never
/// share torch's global generator, and a recomputed (gradient-checkpointed) layer can replay exactly the masks of
/// its first pass by saving and restoring <see cref="GetState"/>. The generator follows the device of the tensors
/// it is asked to serve.
/// </summary>
public sealed class RandomSource : IDisposable
{
    private ulong _seed;
    private Generator? _generator;
    private Tensor? _pendingState;

    /// <summary>A stream seeded with <paramref name="seed"/>.</summary>
    public RandomSource(ulong seed) => _seed = seed;

    /// <summary>The generator for tensors on <paramref name="device"/> (re-created from the seed when the device changes).</summary>
    public Generator For(Device device)
    {
        if (_generator is null || _generator.device.type != device.type || _generator.device.index != device.index)
        {
            _generator?.Dispose();
            _generator = new Generator(_seed, device);
            if (_pendingState is not null)
            {
                _generator.set_state(_pendingState);
                _pendingState.Dispose();
                _pendingState = null;
            }
        }
        return _generator;
    }

    /// <summary>The generator's state, or null before first use.</summary>
    public Tensor? GetState() => _generator?.get_state();

    /// <summary>
    /// Restores a state returned by <see cref="GetState"/>; before first use (a resumed run), the generator starts from
    /// it when it is created.
    /// </summary>
    public void SetState(Tensor? state)
    {
        if (state is null) return;
        if (_generator is not null) _generator.set_state(state);
        else
        {
            _pendingState?.Dispose();
            _pendingState = state.detach().clone().DetachFromDisposeScope();
        }
    }

    /// <summary>Gives every <see cref="Dropout"/> inside <paramref name="module"/> (adapters included) this stream.</summary>
    public void AttachTo(nn.Module module)
    {
        foreach (var (_, m) in module.named_modules())
            if (m is Dropout dropout) dropout.Random = this;
    }

    /// <summary>Returns every <see cref="Dropout"/> inside <paramref name="module"/> to torch's global generator.</summary>
    public static void DetachFrom(nn.Module module)
    {
        foreach (var (_, m) in module.named_modules())
            if (m is Dropout dropout) dropout.Random = null;
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _generator?.Dispose();
        _pendingState?.Dispose();
    }
}
