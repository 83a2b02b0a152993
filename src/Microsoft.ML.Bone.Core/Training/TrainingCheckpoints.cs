using System.Security.Cryptography;
using System.Text.Json;
using Microsoft.ML.Bone.IO;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Training;

/// <summary>Where and how often the training loop writes checkpoints, and whether it resumes from one.</summary>
/// <param name="Directory">Folder of <c>checkpoint-NNNNNNNN</c> subfolders (created if missing).</param>
/// <param name="EverySteps">Optimizer steps between checkpoints.</param>
/// <param name="Keep">Newest checkpoints kept; older ones are deleted once a newer one is complete.</param>
/// <param name="Resume">Continue from the newest valid checkpoint (a fresh start when there is none).</param>
/// <param name="Identity">
/// What the run is made of, by name (e.g. <c>data</c>, <c>base</c>, <c>options</c> → a digest or description): a
/// checkpoint whose identity differs is refused on resume, naming the parts that differ.
/// </param>
public sealed record CheckpointSettings(string Directory, int EverySteps, int Keep, bool Resume, IReadOnlyDictionary<string, string> Identity);

/// <summary>The loop's position and counters at the end of an optimizer step.</summary>
internal sealed record LoopState(
    int Step, int Epoch, int NextBatch, long Tokens, int SinceImprovement, double? Best, int NonFiniteInARow, List<TrainingProgress> History);

/// <summary>
/// Checkpoints of a training run: trainable weights (and the best-validation snapshot), AdamW's moments, the dropout
/// stream's state and the loop's position. Each is a folder written under a temporary name and renamed when
/// complete, with <c>state.json</c> (holding the digests of the other files) written last: a kill at any moment
/// leaves every earlier checkpoint valid.
/// </summary>
internal static class TrainingCheckpoints
{
    private const string Prefix = "checkpoint-", StateFile = "state.json", WeightsFile = "weights.safetensors", OptimizerFile = "optimizer.bin";
    private const int FormatVersion = 1;

    private sealed record StateRecord(
        int Version, Dictionary<string, string> Identity, LoopState Loop, int Parameters, bool HasBest, bool HasDropoutState,
        string WeightsSha256, string OptimizerSha256);

    public static void Write(CheckpointSettings settings, LoopState state, IReadOnlyList<Parameter> trainable,
        Dictionary<Parameter, Tensor>? best, OptimizerHelper optimizer, Nn.RandomSource dropout)
    {
        System.IO.Directory.CreateDirectory(settings.Directory);
        TempPaths.RemoveAllStaleSiblings(settings.Directory);
        string final = Path.Combine(settings.Directory, $"{Prefix}{state.Step:D8}");
        string temp = TempPaths.Sibling(final);
        try
        {
            System.IO.Directory.CreateDirectory(temp);
            bool hasDropoutState;
            using (var scope = NewDisposeScope())
            {
                var tensors = new Dictionary<string, Tensor>();
                for (int i = 0; i < trainable.Count; i++) tensors[$"param.{i}"] = trainable[i].detach().cpu();
                if (best is not null) for (int i = 0; i < trainable.Count; i++) tensors[$"best.{i}"] = best[trainable[i]].cpu();
                Tensor? rng = dropout.GetState();
                hasDropoutState = rng is not null;
                if (rng is not null) tensors["dropout.state"] = rng;
                SafetensorsWriter.Write(Path.Combine(temp, WeightsFile), tensors);
            }
            using (var stream = new FileStream(Path.Combine(temp, OptimizerFile), FileMode.CreateNew))
            using (var writer = new BinaryWriter(stream))
            {
                optimizer.save_state_dict(writer);
                writer.Flush();
                stream.Flush(flushToDisk: true);
            }
            var record = new StateRecord(FormatVersion, new Dictionary<string, string>(settings.Identity), state, trainable.Count, best is not null,
                hasDropoutState, Digest(Path.Combine(temp, WeightsFile)), Digest(Path.Combine(temp, OptimizerFile)));
            AtomicFile.Write(Path.Combine(temp, StateFile), s => JsonSerializer.Serialize(s, record));
            FaultInjection.BeforeCommit(temp, final);
            if (System.IO.Directory.Exists(final)) System.IO.Directory.Delete(final, recursive: true);
            System.IO.Directory.Move(temp, final);
        }
        catch
        {
            if (System.IO.Directory.Exists(temp)) System.IO.Directory.Delete(temp, recursive: true);
            throw;
        }
        foreach (string old in Complete(settings.Directory).Skip(settings.Keep)) System.IO.Directory.Delete(old, recursive: true);
    }

    /// <summary>
    /// Restores the newest valid checkpoint into the parameters, the optimizer and the dropout stream and returns the
    /// loop's state, or null when there is none. A checkpoint of another run (different identity) is an error.
    /// </summary>
    public static (LoopState State, Dictionary<Parameter, Tensor>? Best)? Restore(CheckpointSettings settings, IReadOnlyList<Parameter> trainable,
        OptimizerHelper optimizer, Nn.RandomSource dropout, Action<string>? log)
    {
        foreach (string folder in Complete(settings.Directory))
        {
            StateRecord? record = Read(folder, log);
            if (record is null) continue;
            var differing = settings.Identity.Keys.Union(record.Identity.Keys)
                .Where(k => !settings.Identity.TryGetValue(k, out string? mine) || !record.Identity.TryGetValue(k, out string? theirs) || mine != theirs)
                .Order(StringComparer.Ordinal).ToList();
            if (differing.Count > 0)
                throw new InvalidOperationException($"{folder}: this checkpoint was made by a different run ({string.Join(", ", differing)} differ); "
                    + "resume with the same data, base model and options, or give another checkpoint directory.");
            if (record.Parameters != trainable.Count)
                throw new InvalidOperationException($"{folder}: the checkpoint has {record.Parameters} trainable tensors, this run {trainable.Count}.");
            Dictionary<Parameter, Tensor>? best = record.HasBest ? [] : null;
            using (var file = SafetensorsFile.Open(Path.Combine(folder, WeightsFile)))
            using (no_grad())
            {
                for (int i = 0; i < trainable.Count; i++)
                {
                    using Tensor saved = file.Load($"param.{i}");
                    if (!saved.shape.SequenceEqual(trainable[i].shape))
                        throw new InvalidOperationException($"{folder}: trainable tensor {i} is [{string.Join(", ", saved.shape)}], this run's is [{string.Join(", ", trainable[i].shape)}].");
                    trainable[i].copy_(saved);
                    if (best is not null) best[trainable[i]] = file.Load($"best.{i}").to(trainable[i].device).DetachFromDisposeScope();
                }
                if (record.HasDropoutState) dropout.SetState(file.Load("dropout.state"));
            }
            using (var stream = InputFile.OpenRead(Path.Combine(folder, OptimizerFile)))
            using (var reader = new BinaryReader(stream))
                optimizer.load_state_dict(reader);
            log?.Invoke($"resumed from {folder} (step {record.Loop.Step})");
            return (record.Loop, best);
        }
        return null;
    }

    /// <summary>Complete checkpoint folders, newest first.</summary>
    private static IEnumerable<string> Complete(string directory) =>
        !System.IO.Directory.Exists(directory) ? [] :
        System.IO.Directory.EnumerateDirectories(directory, Prefix + "*")
            .Where(d => int.TryParse(Path.GetFileName(d)[Prefix.Length..], out _) && File.Exists(Path.Combine(d, StateFile)))
            .OrderByDescending(d => Path.GetFileName(d), StringComparer.Ordinal).ToList();

    private static StateRecord? Read(string folder, Action<string>? log)
    {
        try
        {
            var record = JsonSerializer.Deserialize<StateRecord>(InputFile.ReadAllText(Path.Combine(folder, StateFile)));
            if (record is null || record.Version != FormatVersion) throw new InvalidDataException($"format version {record?.Version}");
            if (Digest(Path.Combine(folder, WeightsFile)) != record.WeightsSha256 || Digest(Path.Combine(folder, OptimizerFile)) != record.OptimizerSha256)
                throw new InvalidDataException("a file's digest differs from the one recorded");
            return record;
        }
        catch (Exception e) when (e is IOException or InvalidDataException or JsonException)
        {
            // A damaged checkpoint is passed over for the next older one, never loaded.
            log?.Invoke($"warning: skipping checkpoint {folder}: {e.Message}");
            return null;
        }
    }

    private static string Digest(string path)
    {
        using var stream = InputFile.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(stream));
    }
}
