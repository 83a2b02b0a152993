using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Data;
using Microsoft.ML.Bone.Evaluation;
using Microsoft.ML.Bone.FineTuning;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Models.Roberta;
using Microsoft.ML.Bone.Persistence;
using Microsoft.ML.Bone.Tasks;
using Microsoft.ML.Bone.Tokenization;
using Microsoft.ML.Bone.Training;
using Microsoft.ML.Runtime;
using TorchSharp;

namespace Microsoft.ML.Bone;

/// <summary>
/// Fine-tunes a RoBERTa checkpoint with Bone, Bat, LoRA, PiSSA, OLoRA or in full, to classify one sentence or a
/// pair (key-typed label) or to score it (Single label, regression). Create it with
/// <c>mlContext.Bone.TextClassification(...)</c>.
/// </summary>
public sealed class BoneTextClassificationTrainer : IEstimator<BoneTextClassificationTransformer>
{
    private readonly MLContext _context;
    private readonly BoneTextClassificationOptions _options;
    private readonly int _seed;

    internal BoneTextClassificationTrainer(MLContext context, BoneTextClassificationOptions options)
    {
        _context = context;
        _options = options;
        CheckOptions(options);
        // Batch order, dropout and new heads follow the MLContext's seed.
        _seed = ((IHostEnvironment)context).Register(nameof(BoneTextClassificationTrainer)).Rand.Next();
    }

    /// <inheritdoc/>
    public SchemaShape GetOutputSchema(SchemaShape inputSchema)
    {
        var columns = inputSchema.ToDictionary(c => c.Name);
        foreach (string name in TextClassificationColumns.TextColumns(_options.Sentence1ColumnName, _options.Sentence2ColumnName))
        {
            if (!columns.TryGetValue(name, out var text)) throw new ArgumentOutOfRangeException(name, $"Column '{name}' not found in the input.");
            if (text.ItemType is not TextDataViewType || text.Kind != SchemaShape.Column.VectorKind.Scalar) throw new ArgumentException($"Column '{name}' must be text (String).", name);
        }
        if (!columns.TryGetValue(_options.LabelColumnName, out var label)) throw new ArgumentOutOfRangeException(_options.LabelColumnName, $"Label column '{_options.LabelColumnName}' not found in the input.");
        var result = columns.Values.ToDictionary(c => c.Name);
        if (label.IsKey)
        {
            var scoreAnnotations = new SchemaShape([
                MlNetInternals.ShapeColumn(AnnotationKinds.SlotNames, SchemaShape.Column.VectorKind.Vector, TextDataViewType.Instance, false),
                MlNetInternals.ShapeColumn(AnnotationKinds.ScoreColumnKind, SchemaShape.Column.VectorKind.Scalar, TextDataViewType.Instance, false),
                MlNetInternals.ShapeColumn(AnnotationKinds.ScoreValueKind, SchemaShape.Column.VectorKind.Scalar, TextDataViewType.Instance, false)]);
            result[_options.ScoreColumnName] = MlNetInternals.ShapeColumn(_options.ScoreColumnName, SchemaShape.Column.VectorKind.Vector, NumberDataViewType.Single, false, scoreAnnotations);
            var keyValues = label.Annotations.Where(a => a.Name == AnnotationKinds.KeyValues);
            result[_options.PredictedLabelColumnName] = MlNetInternals.ShapeColumn(_options.PredictedLabelColumnName, SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.UInt32, true, new SchemaShape(keyValues));
        }
        else if (label.ItemType == NumberDataViewType.Single && label.Kind == SchemaShape.Column.VectorKind.Scalar)
        {
            result[_options.ScoreColumnName] = MlNetInternals.ShapeColumn(_options.ScoreColumnName, SchemaShape.Column.VectorKind.Scalar, NumberDataViewType.Single, false);
        }
        else throw new ArgumentException($"Label column '{_options.LabelColumnName}' must be a key type for classification (add MapValueToKey(\"{_options.LabelColumnName}\")) or Single for regression.", _options.LabelColumnName);
        return new SchemaShape(result.Values);
    }

    /// <summary>Tokenizes the data, trains the adapter (and head) and returns the fitted transformer.</summary>
    public BoneTextClassificationTransformer Fit(IDataView input)
    {
        var o = _options;
        IHost host = ((IHostEnvironment)_context).Register("BoneTextClassification");
        using IChannel channel = host.Start("Fit");
        TextClassificationColumns.CheckText(input.Schema, o.Sentence1ColumnName, o.Sentence2ColumnName, "training data");
        var (isRegression, key) = TextClassificationColumns.CheckLabel(input.Schema, o.LabelColumnName, "training data");
        LabelValues? labels = key is null ? null : LabelValues.From(input.Schema[o.LabelColumnName], key);

        var train = TextClassificationData.Read(input, o, isRegression, "training data");
        if (train.Count == 0) throw new ArgumentException($"The training data has no rows with a label in column '{o.LabelColumnName}'.", nameof(input));
        TextClassificationData? validation = null;
        if (o.ValidationSet is not null)
        {
            TextClassificationColumns.CheckText(o.ValidationSet.Schema, o.Sentence1ColumnName, o.Sentence2ColumnName, "validation set");
            var (validationRegression, validationKey) = TextClassificationColumns.CheckLabel(o.ValidationSet.Schema, o.LabelColumnName, "validation set");
            if (validationRegression != isRegression || validationKey?.Count != key?.Count)
                throw new ArgumentException($"The validation set's label column '{o.LabelColumnName}' ({o.ValidationSet.Schema[o.LabelColumnName].Type}) does not match the training data's ({input.Schema[o.LabelColumnName].Type}); map both with the same MapValueToKey.", nameof(o.ValidationSet));
            validation = TextClassificationData.Read(o.ValidationSet, o, isRegression, "validation set");
        }

        var device = DeviceSelection.Choose(o.Device, _context);
        torch.manual_seed(_seed);
        var model = RobertaForSequenceClassification.FromPretrained(o.ModelPath, isRegression ? 1 : labels!.Count, o.DType.ToScalarType(), device);
        var tokenizer = RobertaTokenizer.FromDirectory(o.ModelPath);
        channel.Info(MessageSensitivity.None, $"Loaded {o.ModelPath}: {model.Config.NumHiddenLayers} layers, hidden size {model.Config.HiddenSize}, {(isRegression ? "regression" : $"{labels!.Count} classes")}, {train.Count} training rows.");

        AdapterConfig? config = AdapterConfigFactory.Create(o, RobertaForSequenceClassification.AllProjections, ["classifier"]);
        AdapterModel? adapted = config is null ? null : AdapterModel.Inject(model, config);
        List<TorchSharp.Modules.Parameter> trainable = adapted is null ? [.. model.parameters()] : [.. adapted.TrainableParameters()];
        channel.Info(MessageSensitivity.None, adapted is null ? $"Full fine-tuning: {trainable.Sum(p => p.numel()):N0} parameters." : $"{o.Adapter} r={o.EffectiveRank}: {adapted.Summary()}");

        int[][] sequences = train.Encode(tokenizer, o.MaxSequenceLength);
        int[][]? validationSequences = validation?.Encode(tokenizer, o.MaxSequenceLength);
        ValidationMetric metric = o.ValidationMetric ?? (isRegression ? ValidationMetric.Pearson : ValidationMetric.Accuracy);
        TrainingResult result = SequenceClassification.Train(model, trainable, sequences, train.Targets, tokenizer.PadId, o.ToTrainingOptions(_seed),
            validationSequences, validation is null ? null : logits => Metric(metric, validation.Targets, logits, isRegression),
            o.Progress, line => channel.Info(MessageSensitivity.None, line), o.CancellationToken);
        channel.Info(MessageSensitivity.None, $"Trained {result.StepsRun} steps; final loss {result.History.LastOrDefault()?.Loss:F4}" + (result.BestValidationMetric is { } best ? $", best validation {metric} {best:F4}" : "") + ".");

        bool embedded = o.EmbedBaseModel || adapted is null;
        BaseModelReference reference = BaseModelReference.Of(o.ModelPath);
        var spec = new TextClassificationSpec
        {
            Sentence1 = o.Sentence1ColumnName, Sentence2 = o.Sentence2ColumnName, Label = o.LabelColumnName, Score = o.ScoreColumnName,
            PredictedLabel = o.PredictedLabelColumnName, MaxSequenceLength = o.MaxSequenceLength, BatchSize = o.BatchSize,
            IsRegression = isRegression, LabelNames = labels?.Names, LabelValueType = labels?.ValueType, Adapter = o.Adapter,
            AdapterConfigJson = config is null ? null : new PeftAdapterConfig(config, "SEQ_CLS").ToJson(),
            BaseDirectory = reference.Directory, BaseSha256 = reference.Sha256.ToDictionary(), Embedded = embedded, DType = o.DType,
        };
        model.eval();
        return new BoneTextClassificationTransformer(new TextClassificationModel(model, o.ModelPath, adapted, spec), result.History);
    }

    private static double Metric(ValidationMetric metric, IReadOnlyList<float> targets, float[][] logits, bool isRegression)
    {
        if (isRegression)
        {
            double[] truth = targets.Select(t => (double)t).ToArray(), predicted = logits.Select(l => (double)l[0]).ToArray();
            return metric == ValidationMetric.Spearman ? GlueMetrics.Spearman(truth, predicted) : GlueMetrics.Pearson(truth, predicted);
        }
        int[] labels = targets.Select(t => (int)t).ToArray(), predictions = logits.Select(l => Array.IndexOf(l, l.Max())).ToArray();
        return metric switch
        {
            ValidationMetric.F1 => GlueMetrics.F1(labels, predictions),
            ValidationMetric.MatthewsCorrelation => GlueMetrics.MatthewsCorrelation(labels, predictions),
            _ => GlueMetrics.Accuracy(labels, predictions),
        };
    }

    private static void CheckOptions(BoneTextClassificationOptions o)
    {
        if (string.IsNullOrWhiteSpace(o.ModelPath)) throw new ArgumentException("ModelPath must name a Hugging Face RoBERTa directory (config.json, model.safetensors, vocab.json, merges.txt).", nameof(o.ModelPath));
        if (!Directory.Exists(o.ModelPath)) throw new DirectoryNotFoundException($"ModelPath: directory '{o.ModelPath}' not found.");
        if (o.MaxSequenceLength < 8) throw new ArgumentOutOfRangeException(nameof(o.MaxSequenceLength), o.MaxSequenceLength, "MaxSequenceLength must be at least 8.");
        if (o.BatchSize <= 0) throw new ArgumentOutOfRangeException(nameof(o.BatchSize), o.BatchSize, "BatchSize must be positive.");
        if (o.MaxEpochs <= 0) throw new ArgumentOutOfRangeException(nameof(o.MaxEpochs), o.MaxEpochs, "MaxEpochs must be positive.");
        if (o.Rank < 0) throw new ArgumentOutOfRangeException(nameof(o.Rank), o.Rank, "Rank must be positive (or 0 for the adapter's default).");
        if (o.LearningRate < 0) throw new ArgumentOutOfRangeException(nameof(o.LearningRate), o.LearningRate, "LearningRate must be positive (or 0 for the adapter's default).");
    }
}
