using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Models.Roberta;
using Microsoft.ML.Bone.Models.Rwkv6;

namespace Microsoft.ML.Bone.Models;

/// <summary>A decoder architecture: the <c>model_type</c> (or file kind) it answers to and how to load it.</summary>
/// <param name="Name">config.json's <c>model_type</c>, or a file kind such as <c>llama2.c</c>.</param>
/// <param name="Load">Loads a checkpoint directory (or file) with the given options.</param>
/// <param name="RecognizesFile">For single-file formats: true when a file is of this kind; null for config.json architectures.</param>
/// <param name="Shapes">Builds the model on the meta device from the config and tensor headers alone (no weights read), for parameter counts.</param>
public sealed record CausalLMArchitecture(string Name, Func<string, ModelLoadOptions, ICausalLanguageModel> Load, Func<string, bool>? RecognizesFile = null, Func<string, IPretrainedModel>? Shapes = null);

/// <summary>An encoder-with-head architecture: the <c>model_type</c> it answers to and how to load it with a number of labels.</summary>
public sealed record SequenceClassifierArchitecture(string Name, Func<string, int?, ModelLoadOptions, ISequenceClassifier> Load);

/// <summary>
/// Picks the architecture of a checkpoint: by <c>config.json</c>'s <c>model_type</c> for Hugging Face directories,
/// by content for single-file formats. Every trainer and command loads models through here, so a new architecture
/// is one folder under <c>Models/</c> plus one registration.
/// </summary>
public static class ModelRegistry
{
    private static readonly Lock Gate = new();
    private static readonly List<CausalLMArchitecture> CausalLMs = [];
    private static readonly List<SequenceClassifierArchitecture> Classifiers = [];

    static ModelRegistry()
    {
        foreach (string type in LlamaConfig.ModelTypes)
            Register(new CausalLMArchitecture(type, (dir, o) => LlamaForCausalLM.FromPretrained(dir, o), Shapes: dir => new LlamaForCausalLM(LlamaConfig.Load(dir), Nn.ParameterPlacement.ShapesOnly())));
        Register(new CausalLMArchitecture("llama2.c", (file, o) => Llama2cCheckpoint.Load(file, o), Llama2cCheckpoint.IsLlama2cFile));
        Register(new CausalLMArchitecture(Rwkv6Config.ModelType, (dir, o) => Rwkv6Checkpoint.Load(dir, o), Shapes: Rwkv6Checkpoint.Shapes));
        Register(new CausalLMArchitecture(Rwkv6Checkpoint.PthKind, (file, o) => Rwkv6Checkpoint.Load(file, o), Rwkv6Checkpoint.IsRwkv6Pth, Rwkv6Checkpoint.Shapes));
        Register(new CausalLMArchitecture(Rwkv6Checkpoint.RwkvCppKind, (file, o) => Rwkv6Checkpoint.Load(file, o), Rwkv6Checkpoint.IsRwkv6Cpp, Rwkv6Checkpoint.Shapes));
        Register(new SequenceClassifierArchitecture("roberta", (dir, labels, o) => RobertaForSequenceClassification.FromPretrained(dir, labels, o)));
    }

    /// <summary>Names of the registered decoders (model types and file kinds).</summary>
    public static IReadOnlyList<string> CausalLMNames { get { lock (Gate) return CausalLMs.Select(a => a.Name).ToArray(); } }

    /// <summary>Names of the registered sequence classifiers.</summary>
    public static IReadOnlyList<string> SequenceClassifierNames { get { lock (Gate) return Classifiers.Select(a => a.Name).ToArray(); } }

    /// <summary>Adds (or replaces, by name) a decoder architecture.</summary>
    public static void Register(CausalLMArchitecture architecture)
    {
        lock (Gate)
        {
            CausalLMs.RemoveAll(a => a.Name == architecture.Name);
            CausalLMs.Add(architecture);
        }
    }

    /// <summary>Adds (or replaces, by name) a sequence-classifier architecture.</summary>
    public static void Register(SequenceClassifierArchitecture architecture)
    {
        lock (Gate)
        {
            Classifiers.RemoveAll(a => a.Name == architecture.Name);
            Classifiers.Add(architecture);
        }
    }

    /// <summary>
    /// The architecture name of <paramref name="path"/>: config.json's <c>model_type</c> for a directory, the file
    /// kind for a single file. Errors name the file and list what is supported.
    /// </summary>
    public static string ArchitectureOf(string path)
    {
        if (File.Exists(path))
        {
            lock (Gate)
                return CausalLMs.FirstOrDefault(a => a.RecognizesFile?.Invoke(path) == true)?.Name
                    ?? throw new InvalidDataException($"{path}: not a checkpoint file of a supported kind ({string.Join(", ", CausalLMs.Where(a => a.RecognizesFile is not null).Select(a => a.Name))}); Hugging Face checkpoints are directories with config.json.");
        }
        if (!Directory.Exists(path)) throw new DirectoryNotFoundException($"{path}: no such model directory (a Hugging Face folder with config.json) or checkpoint file.");
        HfConfig config = HfConfig.Load(path);
        if (!config.Has("model_type")) throw config.Error("model_type", $"is missing; supported: {Supported()}");
        return config.String("model_type");
    }

    /// <summary>Loads the decoder at <paramref name="path"/> (directory or single file).</summary>
    public static ICausalLanguageModel LoadCausalLM(string path, ModelLoadOptions? options = null)
    {
        string name = ArchitectureOf(path);
        CausalLMArchitecture architecture;
        lock (Gate)
            architecture = CausalLMs.FirstOrDefault(a => a.Name == name) ?? throw Unsupported(path, name, "a causal language model");
        return architecture.Load(path, options ?? ModelLoadOptions.Default);
    }

    /// <summary>Loads the sequence classifier at <paramref name="path"/> with <paramref name="numLabels"/> outputs (null: the checkpoint's).</summary>
    public static ISequenceClassifier LoadSequenceClassifier(string path, int? numLabels = null, ModelLoadOptions? options = null)
    {
        string name = ArchitectureOf(path);
        SequenceClassifierArchitecture architecture;
        lock (Gate)
            architecture = Classifiers.FirstOrDefault(a => a.Name == name) ?? throw Unsupported(path, name, "a sequence classifier");
        return architecture.Load(path, numLabels, options ?? ModelLoadOptions.Default);
    }

    /// <summary>
    /// The decoder at <paramref name="path"/> built on the meta device from its config and tensor headers only: shapes
    /// and parameter counts of a 7B model without reading (or allocating) its weights.
    /// </summary>
    public static IPretrainedModel LoadShapes(string path)
    {
        string name = ArchitectureOf(path);
        CausalLMArchitecture architecture;
        lock (Gate)
            architecture = CausalLMs.FirstOrDefault(a => a.Name == name) ?? throw Unsupported(path, name, "a causal language model");
        return architecture.Shapes?.Invoke(path) ?? throw new NotSupportedException($"{path}: {name} models cannot be built from shapes alone.");
    }

    /// <summary>Loads whatever <paramref name="path"/> holds: a decoder or a sequence classifier.</summary>
    public static IPretrainedModel Load(string path, ModelLoadOptions? options = null)
    {
        string name = ArchitectureOf(path);
        bool isClassifier;
        lock (Gate) isClassifier = Classifiers.Any(a => a.Name == name);
        return isClassifier ? LoadSequenceClassifier(path, null, options) : LoadCausalLM(path, options);
    }

    private static InvalidDataException Unsupported(string path, string name, string wanted)
    {
        string where = File.Exists(path) ? path : Path.Combine(path, "config.json");
        return new InvalidDataException($"{where}: model_type \"{name}\" is not supported as {wanted}; supported: {Supported()}.");
    }

    private static string Supported()
    {
        lock (Gate)
            return $"causal LMs {string.Join(", ", CausalLMs.Select(a => a.Name))}; sequence classifiers {string.Join(", ", Classifiers.Select(a => a.Name))}";
    }
}
