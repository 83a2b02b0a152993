using Microsoft.ML.Bone.Data;
using Microsoft.ML.Bone.FineTuning;
using Microsoft.ML.Bone.Models;
using Microsoft.ML.Bone.Persistence;
using Microsoft.ML.Bone.Tasks;
using Microsoft.ML.Bone.Tokenization;
using Microsoft.ML.Bone.Training;
using Microsoft.ML.Runtime;
using TorchSharp.Modules;

namespace Microsoft.ML.Bone;

/// <summary>
/// Instruction-tunes a causal LM (any architecture the registry knows: LLaMA, Mistral, Qwen2, llama2.c files) with
/// Bone, Bat, LoRA, PiSSA, OLoRA or in full on <c>Prompt</c> / <c>Response</c> text columns; the loss covers response
/// tokens only. Create it with <c>mlContext.Bone.CausalLM(...)</c>.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input and output columns
/// | Column | Type | Role |
/// | -- | -- | -- |
/// | `Prompt` (`PromptColumnName`) | text | the instruction, placed into `PromptTemplate` |
/// | `Response` (`ResponseColumnName`) | text | what the model learns to answer (training and evaluation) |
/// | `Completion` (`CompletionColumnName`) | text | output: the generated answer, cut at the first stop string |
///
/// ### Trainer characteristics
/// | | |
/// | -- | -- |
/// | Machine learning task | text generation (instruction tuning) |
/// | Is normalization required? | no |
/// | Is caching required? | no (the data is read once and tokenized in memory) |
/// | Required NuGet in addition to Microsoft.ML | Microsoft.ML.Bone (TorchSharp-cpu, or a TorchSharp CUDA package) |
/// | Exportable to ONNX | no; `ExportMergedModel` writes a Hugging Face checkpoint, `ExportPeftAdapter` a PEFT adapter |
///
/// ### Training algorithm details
/// Prompt and response are tokenized with the model's own tokenizer (BOS first where the model has one, EOS after the
/// response); the loss is the cross-entropy of response tokens only, labels shifted once. Long examples lose prompt
/// tokens first. The adapter goes on q, k, v, o, gate, up and down of every layer (or `TargetModules`); AdamW updates
/// the adapter only. `Transform` generates completions in batches with a key/value cache; `EvaluateCausalLM` reports
/// loss, perplexity and GSM8K-style exact match.
/// ]]></format>
/// </remarks>
/// <example>
/// Instruction tuning on GSM8K, generation and evaluation: <c>samples/CausalLM/Program.cs</c>.
/// </example>
public sealed class BoneCausalLMTrainer : BoneTrainerBase<BoneCausalLMTransformer>
{
    private readonly BoneCausalLMOptions _options;

    internal BoneCausalLMTrainer(MLContext context, BoneCausalLMOptions options)
        : base(context, options, nameof(BoneCausalLMTrainer)) => _options = options;

    /// <inheritdoc/>
    public override SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        var columns = inputSchema.ToDictionary(c => c.Name);
        foreach (string name in new[] { _options.PromptColumnName, _options.ResponseColumnName })
            if (!columns.TryGetValue(name, out var c) || c.ItemType is not TextDataViewType)
                throw new ArgumentOutOfRangeException(name, $"Column '{name}' (text) not found in the input.");
        columns[_options.CompletionColumnName] = MlNetInternals.ShapeColumn(_options.CompletionColumnName, SchemaShape.Column.VectorKind.Scalar, TextDataViewType.Instance, false);
        return new SchemaShape(columns.Values);
    }

    private protected override FitTask Begin(IDataView input, IChannel channel) => new CausalLMFit(_options, input, Seed, channel, Context);
}

/// <summary>Instruction tuning's part of <c>Fit</c>.</summary>
internal sealed class CausalLMFit : FitTask
{
    private readonly BoneCausalLMOptions _o;
    private readonly int _seed;
    private readonly List<(string Prompt, string Response)> _pairs;
    private readonly List<(string Prompt, string Response)>? _validationPairs;
    private ICausalTokenizer? _tokenizer;
    private List<PromptResponse> _examples = [];
    private List<PromptResponse>? _validation;
    private readonly IHostEnvironment _env;

    public CausalLMFit(BoneCausalLMOptions o, IDataView input, int seed, IChannel channel, IHostEnvironment env)
    {
        _o = o;
        _env = env;
        _seed = seed;
        _pairs = CausalLMData.Read(input, o.PromptColumnName, o.ResponseColumnName, "training data", o.CancellationToken);
        if (_pairs.Count == 0) throw new ArgumentException("The training data has no rows.", nameof(input));
        _validationPairs = o.ValidationSet is null ? null : CausalLMData.Read(o.ValidationSet, o.PromptColumnName, o.ResponseColumnName, "validation set", o.CancellationToken);
        channel.Info(MessageSensitivity.None, $"{_pairs.Count} training pairs.");
    }

    public override string PeftTaskType => "CAUSAL_LM";

    public override IReadOnlyList<string> ModulesToSave { get; } = [];

    public override int MaxSequenceLength => _o.MaxSequenceLength;

    public override IPretrainedModel LoadBase(string path, ModelLoadOptions options) => ModelRegistry.LoadCausalLM(path, options);

    public override TokenizerFiles LocateTokenizer(string modelPath) => CausalTokenizers.Locate(modelPath, _o.TokenizerPath);

    public override void Prepare(IPretrainedModel model, TokenizerFiles tokenizer, Action<string> warn)
    {
        var lm = (ICausalLanguageModel)model;
        if (_o.MaxSequenceLength > model.MaxSequenceLength)
            throw new ArgumentOutOfRangeException(nameof(_o.MaxSequenceLength), _o.MaxSequenceLength, $"MaxSequenceLength ({_o.MaxSequenceLength}) exceeds the {model.MaxSequenceLength} positions the model was trained for (max_position_embeddings in {Path.Combine(_o.ModelPath, "config.json")}); lower it, or use a checkpoint with rope_scaling for longer contexts.");
        _tokenizer = CausalLMModel.OpenTokenizer(lm, tokenizer, CausalLMModel.ConfigOf(_o.ModelPath));
        _examples = _pairs.Select(p => CausalLMModel.Encode(_tokenizer, Settings, p.Prompt, p.Response)).ToList();
        _validation = _validationPairs?.Select(p => CausalLMModel.Encode(_tokenizer, Settings, p.Prompt, p.Response)).ToList();
        WarnTruncated(_examples, "training", warn);
        if (_validation is not null) WarnTruncated(_validation, "validation", warn);
    }

    private void WarnTruncated(IReadOnlyList<PromptResponse> examples, string which, Action<string> warn)
    {
        int longer = examples.Count(e => e.Prompt.Length + e.Response.Length > _o.MaxSequenceLength);
        if (longer > 0)
            warn($"{longer} of {examples.Count} {which} examples are longer than MaxSequenceLength ({_o.MaxSequenceLength} tokens) and are truncated (the prompt's start first, then the response's end).");
    }

    public override string DataDigest() => Digests.Of(_examples.SelectMany<PromptResponse, int[]>(e => [e.Prompt, [-1], e.Response, [-2]]).ToArray(), []);

    public override TrainingResult Train(IPretrainedModel model, IReadOnlyList<Parameter> trainable, TrainingOptions options,
        IProgress<TrainingProgress>? progress, Action<string> log, CancellationToken cancellationToken) =>
        CausalLanguageModeling.Train((ICausalLanguageModel)model, trainable, _examples, _tokenizer!.PadId, _o.MaxSequenceLength, options, _validation, progress, log, cancellationToken);

    private CausalLMSettings Settings => new()
    {
        Prompt = _o.PromptColumnName, Response = _o.ResponseColumnName, Completion = _o.CompletionColumnName, PromptTemplate = _o.PromptTemplate,
        StopStrings = _o.StopStrings,
        Generation = new GenerationOptions { MaxNewTokens = _o.MaxNewTokens, Temperature = _o.Temperature, TopK = _o.TopK, TopP = _o.TopP, RepetitionPenalty = _o.RepetitionPenalty, Seed = _seed },
    };

    public override SavedModel Complete(SavedModel record) => record with { CausalLM = Settings };

    public override ITransformer CreateTransformer(FineTunedModel model, IReadOnlyList<TrainingProgress> history) =>
        new BoneCausalLMTransformer(new CausalLMModel(model) { Warn = HostWarnings.To(_env, nameof(BoneCausalLMTransformer)) }, history, _o.OnToken);
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
