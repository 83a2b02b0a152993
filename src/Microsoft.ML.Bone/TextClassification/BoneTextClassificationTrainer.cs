using Microsoft.ML.Bone.Data;
using Microsoft.ML.Bone.Evaluation;
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
/// Fine-tunes a sequence classifier (RoBERTa) with Bone, Bat, LoRA, PiSSA, OLoRA or in full, to classify one sentence
/// or a pair (key-typed label) or to score it (Single label, regression). Create it with
/// <c>mlContext.Bone.TextClassification(...)</c>.
/// </summary>
/// <remarks>
/// <format type="text/markdown"><![CDATA[
/// ### Input and output columns
/// | Column | Type | Role |
/// | -- | -- | -- |
/// | `Sentence1` (`Sentence1ColumnName`) | text | the sentence |
/// | `Sentence2` (`Sentence2ColumnName`, optional) | text | the second sentence of a pair |
/// | `Label` (`LabelColumnName`) | key (classification, from `MapValueToKey`) or `Single` (regression) | the target |
/// | `Score` (`ScoreColumnName`) | vector of `Single` (class probabilities, slot names = class values) or `Single` | output |
/// | `PredictedLabel` (`PredictedLabelColumnName`) | key, with the label's key values (classification only) | output |
///
/// ### Trainer characteristics
/// | | |
/// | -- | -- |
/// | Machine learning task | multiclass classification, binary classification, regression |
/// | Is normalization required? | no |
/// | Is caching required? | no (the data is read once and tokenized in memory) |
/// | Required NuGet in addition to Microsoft.ML | Microsoft.ML.Bone (TorchSharp-cpu, or a TorchSharp CUDA package) |
/// | Exportable to ONNX | no; `ExportMergedModel` writes a Hugging Face checkpoint, `ExportPeftAdapter` a PEFT adapter |
///
/// ### Training algorithm details
/// The base checkpoint is loaded through the model registry (its `config.json` says which architecture), the adapter
/// is injected into every projection of every layer (or `TargetModules`), the classification head trains in full,
/// and AdamW updates only those, over length-bucketed batches with warmup and decay. The validation set, if given, is
/// scored after each epoch; early stopping keeps the best weights. Scoring is lazy and batched.
/// ]]></format>
/// </remarks>
/// <example>
/// The whole pipeline, from data to a reloaded model zip: <c>samples/TextClassification/Program.cs</c>.
/// </example>
public sealed class BoneTextClassificationTrainer : BoneTrainerBase<BoneTextClassificationTransformer>
{
    private readonly BoneTextClassificationOptions _options;

    internal BoneTextClassificationTrainer(MLContext context, BoneTextClassificationOptions options)
        : base(context, options, nameof(BoneTextClassificationTrainer)) => _options = options;

    /// <inheritdoc/>
    public override SchemaShape GetOutputSchema(SchemaShape inputSchema)
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

    private protected override FitTask Begin(IDataView input, IChannel channel) => new TextClassificationFit(_options, input, channel);
}

/// <summary>Text classification's part of <c>Fit</c>.</summary>
internal sealed class TextClassificationFit : FitTask
{
    private readonly BoneTextClassificationOptions _o;
    private readonly bool _isRegression;
    private readonly LabelValues? _labels;
    private readonly TextClassificationData _train;
    private readonly TextClassificationData? _validation;
    private RobertaTokenizer? _tokenizer;
    private int[][] _sequences = [];
    private int[][]? _validationSequences;

    public TextClassificationFit(BoneTextClassificationOptions o, IDataView input, IChannel channel)
    {
        _o = o;
        TextClassificationColumns.CheckText(input.Schema, o.Sentence1ColumnName, o.Sentence2ColumnName, "training data");
        var (isRegression, key) = TextClassificationColumns.CheckLabel(input.Schema, o.LabelColumnName, "training data");
        _isRegression = isRegression;
        _labels = key is null ? null : LabelValues.From(input.Schema[o.LabelColumnName], key);
        _train = TextClassificationData.Read(input, o, TextClassificationData.OwnLabel(input.Schema[o.LabelColumnName], isRegression), "training data");
        if (_train.Count == 0) throw new ArgumentException($"The training data has no rows with a label in column '{o.LabelColumnName}'.", nameof(input));
        if (o.ValidationSet is not null)
        {
            TextClassificationColumns.CheckText(o.ValidationSet.Schema, o.Sentence1ColumnName, o.Sentence2ColumnName, "validation set");
            var label = TextClassificationColumns.ValidationLabel(o.ValidationSet.Schema, o.LabelColumnName, isRegression, _labels, input.Schema[o.LabelColumnName].Type);
            _validation = TextClassificationData.Read(o.ValidationSet, o, label, "validation set");
            if (_validation.Count == 0)
                throw new ArgumentException($"No row of the validation set has a label the training data has (column '{o.LabelColumnName}'; training classes: {string.Join(", ", _labels?.Names ?? [])}).", nameof(o.ValidationSet));
            if (_validation.Skipped > 0)
                channel.Warning(MessageSensitivity.None, $"{_validation.Skipped} validation rows were skipped: their label is missing or a class the training data does not have.");
        }
        channel.Info(MessageSensitivity.None, $"{_train.Count} training rows, {(isRegression ? "regression" : $"{_labels!.Count} classes")}.");
    }

    public override string PeftTaskType => "SEQ_CLS";

    public override IReadOnlyList<string> ModulesToSave { get; } = ["classifier"];

    public override int MaxSequenceLength => _o.MaxSequenceLength;

    public override IPretrainedModel LoadBase(string path, ModelLoadOptions options) =>
        ModelRegistry.LoadSequenceClassifier(path, _isRegression ? 1 : _labels!.Count, options);

    public override TokenizerFiles LocateTokenizer(string modelPath) => TextClassificationModel.LocateTokenizer(modelPath);

    public override void Prepare(IPretrainedModel model, TokenizerFiles tokenizer, Action<string> warn)
    {
        if (_o.MaxSequenceLength > model.MaxSequenceLength)
            throw new ArgumentOutOfRangeException(nameof(_o.MaxSequenceLength), _o.MaxSequenceLength, $"MaxSequenceLength ({_o.MaxSequenceLength}) exceeds the {model.MaxSequenceLength} positions of {Path.Combine(_o.ModelPath, "config.json")}.");
        _tokenizer = RobertaTokenizer.Load(tokenizer);
        if (_tokenizer.IdLimit > model.VocabSize)
            throw new InvalidDataException($"{tokenizer.Describe("vocab.json")} has ids up to {_tokenizer.IdLimit - 1}, but {Path.Combine(_o.ModelPath, "config.json")} gives vocab_size {model.VocabSize}: the tokenizer and the model do not belong together.");
        (_sequences, int truncated) = _train.Encode(_tokenizer, _o.MaxSequenceLength);
        WarnTruncated(truncated, _sequences.Length, "training", warn);
        if (_validation is not null)
        {
            (_validationSequences, truncated) = _validation.Encode(_tokenizer, _o.MaxSequenceLength);
            WarnTruncated(truncated, _validationSequences.Length, "validation", warn);
        }
    }

    private void WarnTruncated(int truncated, int count, string which, Action<string> warn)
    {
        if (truncated > 0)
            warn($"{truncated} of {count} {which} rows are longer than MaxSequenceLength ({_o.MaxSequenceLength} tokens) and are truncated (longest text first).");
    }

    public override string DataDigest() => Digests.Of(_sequences, _train.Targets);

    public override TrainingResult Train(IPretrainedModel model, IReadOnlyList<Parameter> trainable, TrainingOptions options,
        IProgress<TrainingProgress>? progress, Action<string> log, CancellationToken cancellationToken)
    {
        ValidationMetric metric = _o.ValidationMetric ?? (_isRegression ? ValidationMetric.Pearson : ValidationMetric.Accuracy);
        return SequenceClassification.Train((ISequenceClassifier)model, trainable, _sequences, _train.Targets, _tokenizer!.PadId, options,
            _validationSequences, _validation is null ? null : logits => Metric(metric, _validation.Targets, logits, _isRegression),
            progress, log, cancellationToken);
    }

    public override SavedModel Complete(SavedModel record) => record with
    {
        TextClassification = new TextClassificationSettings
        {
            Sentence1 = _o.Sentence1ColumnName, Sentence2 = _o.Sentence2ColumnName, Label = _o.LabelColumnName, Score = _o.ScoreColumnName,
            PredictedLabel = _o.PredictedLabelColumnName, IsRegression = _isRegression, LabelNames = _labels?.Names, LabelValueType = _labels?.ValueType,
        },
    };

    public override ITransformer CreateTransformer(FineTunedModel model, IReadOnlyList<TrainingProgress> history) =>
        new BoneTextClassificationTransformer(new TextClassificationModel(model), history);

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
}
