using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.FineTuning;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Persistence;
using Microsoft.ML.Bone.Tasks;
using Microsoft.ML.Bone.Training;
using Microsoft.ML.Runtime;
using TorchSharp;

namespace Microsoft.ML.Bone;

/// <summary>
/// Instruction-tunes a LLaMA checkpoint (Hugging Face directory or llama2.c .bin) with Bone, Bat, LoRA, PiSSA, OLoRA
/// or in full on <c>Prompt</c> / <c>Response</c> text columns; the loss covers response tokens only. Create it with
/// <c>mlContext.Bone.CausalLM(...)</c>.
/// </summary>
public sealed class BoneCausalLMTrainer : IEstimator<BoneCausalLMTransformer>
{
    private readonly MLContext _context;
    private readonly BoneCausalLMOptions _options;
    private readonly int _seed;

    internal BoneCausalLMTrainer(MLContext context, BoneCausalLMOptions options)
    {
        _context = context;
        _options = options;
        if (string.IsNullOrWhiteSpace(options.ModelPath)) throw new ArgumentException("ModelPath must name a LLaMA directory or a llama2.c .bin file.", nameof(options.ModelPath));
        if (!Directory.Exists(options.ModelPath) && !File.Exists(options.ModelPath)) throw new DirectoryNotFoundException($"ModelPath: '{options.ModelPath}' not found.");
        if (!options.PromptTemplate.Contains("{prompt}", StringComparison.Ordinal)) throw new ArgumentException("PromptTemplate must contain {prompt}.", nameof(options.PromptTemplate));
        if (options.MaxSequenceLength < 8) throw new ArgumentOutOfRangeException(nameof(options.MaxSequenceLength), options.MaxSequenceLength, "MaxSequenceLength must be at least 8.");
        _seed = ((IHostEnvironment)context).Register(nameof(BoneCausalLMTrainer)).Rand.Next();
    }

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        var columns = inputSchema.ToDictionary(c => c.Name);
        foreach (string name in new[] { _options.PromptColumnName, _options.ResponseColumnName })
            if (!columns.TryGetValue(name, out var c) || c.ItemType is not TextDataViewType)
                throw new ArgumentOutOfRangeException(name, $"Column '{name}' (text) not found in the input.");
        columns[_options.CompletionColumnName] = MlNetInternals.ShapeColumn(_options.CompletionColumnName, SchemaShape.Column.VectorKind.Scalar, TextDataViewType.Instance, false);
        return new SchemaShape(columns.Values);
    }

    /// <summary>Tokenizes the pairs, trains and returns the fitted transformer.</summary>
    public BoneCausalLMTransformer Fit(IDataView input)
    {
        var o = _options;
        IHost host = ((IHostEnvironment)_context).Register("BoneCausalLM");
        using IChannel channel = host.Start("Fit");
        var pairs = CausalLMData.Read(input, o.PromptColumnName, o.ResponseColumnName, "training data", o.CancellationToken);
        if (pairs.Count == 0) throw new ArgumentException("The training data has no rows.", nameof(input));
        var validationPairs = o.ValidationSet is null ? null : CausalLMData.Read(o.ValidationSet, o.PromptColumnName, o.ResponseColumnName, "validation set", o.CancellationToken);

        var device = DeviceSelection.Choose(o.Device, _context);
        torch.manual_seed(_seed);
        LlamaForCausalLM model = CausalLMSources.Load(o.ModelPath, o.DType);
        if (device.type != DeviceType.CPU) model.to(device);
        string tokenizerPath = o.TokenizerPath ?? (Directory.Exists(o.ModelPath) ? Path.Combine(o.ModelPath, "tokenizer.model") : Path.Combine(Path.GetDirectoryName(Path.GetFullPath(o.ModelPath))!, "tokenizer.model"));
        if (!File.Exists(tokenizerPath)) throw new FileNotFoundException($"{tokenizerPath}: not found; set TokenizerPath to the model's SentencePiece tokenizer.model.");
        channel.Info(MessageSensitivity.None, $"Loaded {o.ModelPath}: {model.Config.NumHiddenLayers} layers, hidden size {model.Config.HiddenSize}, vocabulary {model.Config.VocabSize}; {pairs.Count} training pairs.");

        AdapterConfig? config = AdapterConfigFactory.Create(o, LlamaConfig.AllProjections, []);
        AdapterModel? adapted = config is null ? null : AdapterModel.Inject(model, config);
        List<TorchSharp.Modules.Parameter> trainable = adapted is null ? [.. model.parameters()] : [.. adapted.TrainableParameters()];
        channel.Info(MessageSensitivity.None, adapted is null ? $"Full fine-tuning: {trainable.Sum(p => p.numel()):N0} parameters." : $"{o.Adapter} r={o.EffectiveRank}: {adapted.Summary()}");

        bool embedded = o.EmbedBaseModel || adapted is null;
        BaseModelReference reference = BaseModelReference.Of(o.ModelPath);
        var spec = new CausalLMSpec
        {
            Prompt = o.PromptColumnName, Response = o.ResponseColumnName, Completion = o.CompletionColumnName, PromptTemplate = o.PromptTemplate,
            MaxSequenceLength = o.MaxSequenceLength, BatchSize = o.BatchSize, StopStrings = o.StopStrings,
            Generation = new GenerationOptions { MaxNewTokens = o.MaxNewTokens, Temperature = o.Temperature, TopK = o.TopK, TopP = o.TopP, RepetitionPenalty = o.RepetitionPenalty, Seed = _seed },
            Adapter = o.Adapter, AdapterConfigJson = config is null ? null : new PeftAdapterConfig(config, "CAUSAL_LM").ToJson(),
            BaseDirectory = reference.Directory, BaseSha256 = reference.Sha256.ToDictionary(), Embedded = embedded, DType = o.DType,
        };
        spec.Generation.Validate();
        var trained = new CausalLMModel(model, File.ReadAllBytes(tokenizerPath), adapted, spec);
        var examples = pairs.Select(p => trained.Encode(p.Prompt, p.Response)).ToList();
        var validation = validationPairs?.Select(p => trained.Encode(p.Prompt, p.Response)).ToList();
        TrainingResult result = CausalLanguageModeling.Train(model, trainable, examples, trained.Tokenizer.PadId, o.MaxSequenceLength, o.ToTrainingOptions(_seed), validation, o.Progress, line => channel.Info(MessageSensitivity.None, line), o.CancellationToken);
        channel.Info(MessageSensitivity.None, $"Trained {result.StepsRun} steps; final loss {result.History.LastOrDefault()?.Loss:F4}.");
        model.eval();
        return new BoneCausalLMTransformer(trained, result.History, o.OnToken);
    }
}

/// <summary>Prompt / response text pairs read from a data view.</summary>
internal static class CausalLMData
{
    public static List<(string Prompt, string Response)> Read(IDataView data, string promptColumn, string responseColumn, string dataName, CancellationToken cancellationToken)
    {
        foreach (string name in new[] { promptColumn, responseColumn })
        {
            var c = data.Schema.GetColumnOrNull(name) ?? throw new ArgumentOutOfRangeException(name, $"Column '{name}' not found in the {dataName}; its columns are: {string.Join(", ", data.Schema.Where(x => !x.IsHidden).Select(x => x.Name))}.");
            if (c.Type is not TextDataViewType) throw new ArgumentException($"Column '{name}' of the {dataName} must be text (String), but it is {c.Type}.", name);
        }
        var rows = new List<(string, string)>();
        using var cursor = data.GetRowCursor([data.Schema[promptColumn], data.Schema[responseColumn]]);
        var prompt = cursor.GetGetter<ReadOnlyMemory<char>>(data.Schema[promptColumn]);
        var response = cursor.GetGetter<ReadOnlyMemory<char>>(data.Schema[responseColumn]);
        ReadOnlyMemory<char> p = default, r = default;
        while (cursor.MoveNext())
        {
            cancellationToken.ThrowIfCancellationRequested();
            prompt(ref p);
            response(ref r);
            rows.Add((p.ToString(), r.ToString()));
        }
        return rows;
    }
}
