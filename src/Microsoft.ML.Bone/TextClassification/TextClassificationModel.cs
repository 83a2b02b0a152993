using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Data;
using Microsoft.ML.Bone.Models;
using Microsoft.ML.Bone.Persistence;
using Microsoft.ML.Bone.Tasks;
using Microsoft.ML.Bone.Tokenization;

namespace Microsoft.ML.Bone;

/// <summary>A trained text classifier: the fine-tuned model, its tokenizer and labels.</summary>
internal sealed class TextClassificationModel : IDisposable
{
    public TextClassificationModel(FineTunedModel model)
    {
        Trained = model;
        Settings = model.Record.TextClassification ?? throw new InvalidDataException("model zip: this is not a text classification model.");
        Tokenizer = RobertaTokenizer.Load(model.Tokenizer);
        Labels = Settings.IsRegression ? null : new LabelValues(Settings.LabelNames!, Settings.LabelValueType!);
    }

    public FineTunedModel Trained { get; }
    public RobertaTokenizer Tokenizer { get; }
    public TextClassificationSettings Settings { get; }
    public SavedModel Record => Trained.Record;
    public LabelValues? Labels { get; }

    /// <summary>The tokenizer files of a sequence-classifier checkpoint (RoBERTa's vocab.json and merges.txt).</summary>
    public static TokenizerFiles LocateTokenizer(string modelPath)
    {
        foreach (string name in RobertaTokenizer.FileNames)
            if (!File.Exists(Path.Combine(modelPath, name))) throw new FileNotFoundException($"{Path.Combine(modelPath, name)}: not found; RoBERTa needs vocab.json and merges.txt next to its weights.");
        return TokenizerFiles.FromDirectory(modelPath, RobertaTokenizer.FileNames);
    }

    public void Save(ModelSaveContext ctx, MlNetInternals.ModelVersion version) => Trained.Save(ctx, version);

    /// <summary>Rebuilds a model saved by <see cref="Save"/>.</summary>
    public static TextClassificationModel Load(object ctx, MlNetInternals.ModelVersion version) =>
        new(FineTunedModel.Load(ctx, version, (record, path, options) =>
        {
            var settings = record.TextClassification ?? throw new InvalidDataException("model zip: this is not a text classification model.");
            return ModelRegistry.LoadSequenceClassifier(path, settings.IsRegression ? 1 : settings.LabelNames!.Length, options);
        }));

    /// <summary>Writes a Hugging Face model directory with the adapter merged into the weights and the class names as id2label.</summary>
    public void ExportMerged(string directory) => Trained.ExportMerged(directory, Labels?.Names);

    /// <summary>Writes the adapter (and the trained head) as a PEFT adapter directory.</summary>
    public void ExportPeft(string directory) => Trained.ExportPeft(directory, "SEQ_CLS");

    /// <summary>Class probabilities (or the regression value) per token sequence, in batches.</summary>
    public float[][] Predict(int[][] sequences) =>
        Trained.Use((m, _) => SequenceClassification.Predict((ISequenceClassifier)m, sequences, Tokenizer.PadId, Record.BatchSize, softmax: !Settings.IsRegression));

    public void Dispose() => Trained.Dispose();
}
