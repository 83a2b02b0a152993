using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Models;

namespace Microsoft.ML.Bone.Persistence;

/// <summary>
/// One loaded base model and the named adapters of every fine-tuned model that uses it. Model zips that reference
/// the same base files (same digests, dtype and head) share one in-memory copy: a service holds one 7B base and
/// many small task adapters. Each user gets its own adapter name; every use runs under the base's lock with that
/// adapter made active (switching costs nothing: the base is never reloaded or re-merged). The base is disposed
/// when its last user is.
/// </summary>
internal sealed class SharedBaseModel
{
    private static readonly Lock RegistryGate = new();
    // Weak, so models that were never disposed do not keep their base alive forever.
    private static readonly Dictionary<string, WeakReference<SharedBaseModel>> Live = new(StringComparer.Ordinal);
    private static long _nextName;

    private readonly Lock _gate = new();
    private readonly string? _key;
    private int _users;

    private SharedBaseModel(IPretrainedModel model, string? key)
    {
        Model = model;
        _key = key;
    }

    public IPretrainedModel Model { get; }

    /// <summary>The adapters on the base, or null while it has none.</summary>
    public AdapterModel? Adapters { get; private set; }

    /// <summary>How many fine-tuned models use this base.</summary>
    public int Users { get { lock (_gate) return _users; } }

    /// <summary>A base for one model alone (a fitted model, an embedded base, a base PiSSA/OLoRA rewrote, full fine-tuning).</summary>
    public static SharedBaseModel Private(IPretrainedModel model, AdapterModel? adapters) => new(model, null) { Adapters = adapters, _users = 1 };

    /// <summary>
    /// The live base known by <paramref name="key"/>, or a new one from <paramref name="load"/>, with the
    /// caller counted as a user. Loads of one key are serialized, so a base is never loaded twice at once.
    /// </summary>
    public static SharedBaseModel Acquire(string key, Func<IPretrainedModel> load)
    {
        lock (RegistryGate)
        {
            if (Live.TryGetValue(key, out var reference) && reference.TryGetTarget(out SharedBaseModel? existing))
            {
                lock (existing._gate)
                    if (existing._users > 0)
                    {
                        existing._users++;
                        return existing;
                    }
            }
            var shared = new SharedBaseModel(load(), key) { _users = 1 };
            Live[key] = new WeakReference<SharedBaseModel>(shared);
            return shared;
        }
    }

    /// <summary>A process-unique adapter name.</summary>
    public static string NewAdapterName() => $"model{Interlocked.Increment(ref _nextName)}";

    /// <summary>Attaches <paramref name="attach"/>'s adapter under the base's lock (the first one creates <see cref="Adapters"/>).</summary>
    public void AddAdapter(Func<AdapterModel?, AdapterModel> attach)
    {
        lock (_gate) Adapters = attach(Adapters);
    }

    /// <summary>Runs <paramref name="body"/> with adapter <paramref name="adapterName"/> active (or, for null, the base alone) under the base's lock.</summary>
    public T Use<T>(string? adapterName, Func<IPretrainedModel, AdapterModel?, T> body)
    {
        lock (_gate)
        {
            if (Adapters is not null)
            {
                if (adapterName is null) Adapters.SetAdaptersEnabled(false);
                else
                {
                    Adapters.SetActiveAdapter(adapterName);
                    Adapters.SetAdaptersEnabled(true);
                }
            }
            return body(Model, Adapters);
        }
    }

    /// <summary>Drops user <paramref name="adapterName"/>: its adapter is deleted, and the base disposed when nobody is left.</summary>
    public void Release(string? adapterName)
    {
        bool last;
        lock (RegistryGate)
        {
            lock (_gate)
            {
                if (_users == 0) return;
                last = --_users == 0;
                if (!last && adapterName is not null && Adapters is not null && Adapters.AdapterNames.Contains(adapterName))
                {
                    if (Adapters.ActiveAdapter == adapterName) Adapters.SetActiveAdapter(Adapters.AdapterNames.First(n => n != adapterName));
                    Adapters.DeleteAdapter(adapterName);
                }
            }
            if (last && _key is not null && Live.TryGetValue(_key, out var reference) && reference.TryGetTarget(out var current) && current == this) Live.Remove(_key);
        }
        if (last) Model.Dispose();
    }
}
