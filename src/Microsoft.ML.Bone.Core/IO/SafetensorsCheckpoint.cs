using System.Text.Json;
using System.Text.Json.Nodes;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.IO;

/// <summary>
/// A Hugging Face checkpoint: one <c>model.safetensors</c>, or shards listed in <c>model.safetensors.index.json</c>
/// (<c>weight_map</c>: tensor name → shard file). Shards are opened once, lazily; tensors are read on request.
/// </summary>
public sealed class SafetensorsCheckpoint : IDisposable
{
    /// <summary>Single-file checkpoint name.</summary>
    public const string SingleFileName = "model.safetensors";

    /// <summary>Shard index name.</summary>
    public const string IndexFileName = "model.safetensors.index.json";

    private readonly string _directory;
    private readonly Dictionary<string, string> _shardOf;
    private readonly Dictionary<string, SafetensorsFile> _open = new(StringComparer.Ordinal);

    private SafetensorsCheckpoint(string directory, string? indexPath, List<string> shards, Dictionary<string, string> shardOf)
    {
        _directory = directory;
        IndexJsonPath = indexPath;
        ShardFiles = shards;
        _shardOf = shardOf;
    }

    /// <summary>The index file, or null for a single-file checkpoint.</summary>
    public string? IndexJsonPath { get; }

    /// <summary>Weight file names (relative to the checkpoint folder) in order.</summary>
    public IReadOnlyList<string> ShardFiles { get; }

    /// <summary>Every tensor name.</summary>
    public IReadOnlyCollection<string> Names => _shardOf.Keys;

    /// <summary>How errors name this checkpoint: the index or the single file.</summary>
    public string Description => IndexJsonPath ?? Path.Combine(_directory, ShardFiles[0]);

    /// <summary>
    /// Opens a checkpoint folder (<c>model.safetensors</c>, else <c>model.safetensors.index.json</c>), a
    /// <c>.safetensors</c> file, or an index file. Every shard is validated up front and must hold exactly the
    /// tensors the index assigns to it.
    /// </summary>
    public static SafetensorsCheckpoint Open(string pathOrDirectory)
    {
        string? directory, file;
        if (Directory.Exists(pathOrDirectory))
        {
            directory = pathOrDirectory;
            file = File.Exists(Path.Combine(directory, SingleFileName)) ? Path.Combine(directory, SingleFileName)
                : File.Exists(Path.Combine(directory, IndexFileName)) ? Path.Combine(directory, IndexFileName)
                : throw new FileNotFoundException($"{directory}: no {SingleFileName} or {IndexFileName} in this directory.");
        }
        else if (File.Exists(pathOrDirectory))
        {
            file = pathOrDirectory;
            directory = Path.GetDirectoryName(Path.GetFullPath(file))!;
        }
        else throw new FileNotFoundException($"{pathOrDirectory}: no such file or directory.");

        var checkpoint = file.EndsWith(".json", StringComparison.OrdinalIgnoreCase) ? FromIndex(directory, file) : FromSingle(directory, file);
        try { checkpoint.ValidateShards(); }
        catch { checkpoint.Dispose(); throw; }
        return checkpoint;
    }

    /// <summary>True when the checkpoint has <paramref name="name"/>.</summary>
    public bool Contains(string name) => _shardOf.ContainsKey(name);

    /// <summary>The shard file holding <paramref name="name"/>, or null.</summary>
    public string? ShardOf(string name) => _shardOf.GetValueOrDefault(name);

    /// <summary>The header entry of <paramref name="name"/>.</summary>
    public SafetensorsEntry Entry(string name) => Shard(name)[name];

    /// <summary>A new CPU tensor with the data of <paramref name="name"/>.</summary>
    public Tensor Load(string name) => Shard(name).Load(name);

    /// <summary>
    /// Copies tensor <paramref name="name"/> into <paramref name="target"/> (same shape; any dtype and device): read
    /// straight into the target's memory when it is a contiguous CPU tensor of the file's dtype, otherwise through
    /// one temporary CPU tensor that is converted and copied. <paramref name="fingerprint"/> records the bytes read.
    /// </summary>
    public void ReadInto(string name, Tensor target, WeightFingerprint? fingerprint = null)
    {
        SafetensorsFile file = Shard(name);
        SafetensorsEntry entry = file[name];
        if (!entry.Shape.SequenceEqual(target.shape))
            throw new InvalidDataException($"{file.FilePath}: tensor '{name}' has shape [{string.Join(", ", entry.Shape)}] but the model expects [{string.Join(", ", target.shape)}].");
        bool direct = target.device_type == DeviceType.CPU && target.is_contiguous() && target.dtype == entry.DType.ToScalarType();
        using Tensor? staging = direct ? null : empty(entry.Shape, dtype: entry.DType.ToScalarType());
        Tensor destination = staging ?? target;
        file.ReadInto(entry, destination);
        fingerprint?.AddTensor(Path.GetFileName(file.FilePath), entry, destination);
        if (staging is not null) target.copy_(staging);
    }

    /// <summary>Writes a Hugging Face shard index (<c>metadata.total_size</c> and <c>weight_map</c>) atomically.</summary>
    public static void WriteIndex(string indexPath, IReadOnlyDictionary<string, string> weightMap, long totalSize)
    {
        var map = new JsonObject();
        foreach (var (name, shard) in weightMap.OrderBy(p => p.Key, StringComparer.Ordinal)) map[name] = shard;
        var root = new JsonObject { ["metadata"] = new JsonObject { ["total_size"] = totalSize }, ["weight_map"] = map };
        string json = root.ToJsonString(new JsonSerializerOptions { WriteIndented = true, IndentSize = 2 });
        AtomicFile.Write(indexPath, s => s.Write(System.Text.Encoding.UTF8.GetBytes(json)));
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (SafetensorsFile f in _open.Values) f.Dispose();
        _open.Clear();
        _disposed = true;
    }

    private bool _disposed;

    private static SafetensorsCheckpoint FromSingle(string directory, string file)
    {
        using var single = SafetensorsFile.Open(file);
        string name = Path.GetFileName(file);
        return new SafetensorsCheckpoint(directory, null, [name], single.Entries.ToDictionary(e => e.Name, _ => name, StringComparer.Ordinal));
    }

    private static SafetensorsCheckpoint FromIndex(string directory, string indexPath)
    {
        JsonNode? root;
        try { root = JsonNode.Parse(InputFile.ReadAllText(indexPath)); }
        catch (JsonException e) { throw new InvalidDataException($"{indexPath}: not valid JSON ({e.Message})."); }
        if (root is not JsonObject o || o["weight_map"] is not JsonObject weightMap)
            throw new InvalidDataException($"{indexPath}: expected an object with a \"weight_map\" object.");
        var shardOf = new Dictionary<string, string>(StringComparer.Ordinal);
        var shards = new List<string>();
        foreach (var (name, value) in weightMap)
        {
            if (value is not JsonValue v || !v.TryGetValue(out string? shard) || shard.Length == 0)
                throw new InvalidDataException($"{indexPath}: weight_map entry '{name}' must name a shard file.");
            if (Path.IsPathRooted(shard) || shard.Contains("..", StringComparison.Ordinal))
                throw new InvalidDataException($"{indexPath}: shard '{shard}' must be a file name inside the checkpoint folder.");
            if (!File.Exists(Path.Combine(directory, shard)))
                throw new FileNotFoundException($"{indexPath}: shard '{shard}' (holding '{name}') is missing.");
            shardOf[name] = shard;
            if (!shards.Contains(shard)) shards.Add(shard);
        }
        if (shards.Count == 0) throw new InvalidDataException($"{indexPath}: weight_map is empty.");
        shards.Sort(StringComparer.Ordinal);
        return new SafetensorsCheckpoint(directory, indexPath, shards, shardOf);
    }

    private void ValidateShards()
    {
        if (IndexJsonPath is null) return;
        foreach (string shard in ShardFiles)
        {
            SafetensorsFile file = OpenShard(shard);
            foreach (SafetensorsEntry e in file.Entries)
            {
                // A tensor the index does not list would be invisible here but loaded by tools that read whole
                // shards: the checkpoint means two different models, so it is refused.
                if (!_shardOf.TryGetValue(e.Name, out string? owner))
                    throw new InvalidDataException($"{IndexJsonPath}: tensor '{e.Name}' is in shard '{shard}' but the index does not list it.");
                if (owner != shard)
                    throw new InvalidDataException($"{IndexJsonPath}: tensor '{e.Name}' is in shard '{shard}' but the index places it in '{owner}'.");
            }
        }
        foreach (var (name, shard) in _shardOf)
            if (!_open[shard].Contains(name))
                throw new InvalidDataException($"{IndexJsonPath}: tensor '{name}' is listed in shard '{shard}' but that file does not contain it.");
    }

    private SafetensorsFile Shard(string name) =>
        _shardOf.TryGetValue(name, out string? shard) ? OpenShard(shard) : throw new KeyNotFoundException($"{Description}: no tensor named '{name}'.");

    private SafetensorsFile OpenShard(string shard)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (!_open.TryGetValue(shard, out SafetensorsFile? file))
            _open[shard] = file = SafetensorsFile.Open(Path.Combine(_directory, shard));
        return file;
    }
}
