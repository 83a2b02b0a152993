// Fine-tunes a RoBERTa checkpoint on SST-2 with a Bone adapter inside an ordinary ML.NET pipeline, evaluates it with
// ML.NET's evaluator and GLUE's metric, saves the model zip, loads it in a fresh MLContext and predicts.
//
//   dotnet run --project samples/TextClassification -c Release -- [ROBERTA_DIR] [SST2_DIR]
//
// ROBERTA_DIR: a Hugging Face roberta-base (or roberta-large) directory: config.json, model.safetensors, vocab.json,
//              merges.txt. Without it, the sample builds a small RoBERTa with roberta-base's tokenizer and trains it in
//              full on part of SST-2 first, standing in for pre-training, so that everything runs offline in a minute.
// SST2_DIR:    a folder with GLUE's SST-2 train.tsv and dev.tsv (default: ../shared/data/glue/sst2).
using Microsoft.ML;
using Microsoft.ML.Bone;
using Microsoft.ML.Bone.Evaluation;
using Microsoft.ML.Bone.Training;
using Microsoft.ML.Data;
using TextClassificationSample;

string shared = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "..", "shared", "data"));
string sst2 = args.Length > 1 ? args[1] : Path.Combine(shared, "glue", "sst2");
if (!File.Exists(Path.Combine(sst2, "train.tsv")))
{
    Console.Error.WriteLine($"SST-2 not found in {sst2}; pass the folder holding train.tsv and dev.tsv as the second argument.");
    return 1;
}

var ml = new MLContext(seed: 1);
ml.Log += (_, e) => { if (e.Kind == Microsoft.ML.Runtime.ChannelMessageKind.Info && e.Source.StartsWith("BoneTextClassification", StringComparison.Ordinal)) Console.WriteLine("  " + e.RawMessage); };

string work = Directory.CreateTempSubdirectory("bone-sample-").FullName;
string modelPath = args.Length > 0 ? args[0] : SmallRoberta.Pretrain(ml, Path.Combine(shared, "tokenizers", "roberta"), sst2, work);
bool small = args.Length == 0;

IDataView Load(string file) => ml.Data.LoadFromTextFile<Review>(Path.Combine(sst2, file), separatorChar: '\t', hasHeader: true, allowQuoting: false);
IDataView train = ml.Data.TakeRows(Load("train.tsv"), small ? 4000 : 20000);
IDataView dev = Load("dev.tsv");

var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
    .Append(ml.Bone.TextClassification(new BoneTextClassificationOptions
    {
        ModelPath = modelPath,
        Adapter = AdapterKind.Bone,
        Rank = small ? 16 : 64,
        LearningRate = small ? 2e-3 : 2e-4,
        MaxEpochs = small ? 3 : 1,
        BatchSize = 32,
        MaxSequenceLength = 64,
        Progress = new Progress<TrainingProgress>(p => { if (p.Step % 50 == 0) Console.WriteLine($"  {p}"); }),
    }))
    .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));

Console.WriteLine($"Fine-tuning {modelPath} with Bone on SST-2…");
var model = pipeline.Fit(train);

var bone = model.OfType<BoneTextClassificationTransformer>().Single();
IDataView scored = model.Transform(dev);
var metrics = ml.MulticlassClassification.Evaluate(scored);
GlueEvaluation glue = ml.Bone.EvaluateGlue(scored, GlueTask.Sst2);
Console.WriteLine($"{bone.ParameterSummary}");
Console.WriteLine($"dev: micro-accuracy {metrics.MicroAccuracy:F4}, log-loss {metrics.LogLoss:F4}; GLUE {glue}");

string zip = Path.Combine(work, "sentiment.zip");
ml.Model.Save(model, train.Schema, zip);
Console.WriteLine($"saved {zip} ({new FileInfo(zip).Length / 1024} KiB: adapter and head inside, base model by reference)");

var fresh = new MLContext();
ITransformer loaded = fresh.Bone.LoadModel(zip, out _);
var engine = fresh.Model.CreatePredictionEngine<Review, Prediction>(loaded);
foreach (string text in new[] { "a gorgeous , witty , seductive movie . ", "the plot is nothing but boilerplate clichés . " })
{
    Prediction p = engine.Predict(new Review { Sentence1 = text });
    Console.WriteLine($"{p.PredictedLabel} ({string.Join(", ", p.Score.Select(s => s.ToString("F3")))})  {text}");
}
return 0;

namespace TextClassificationSample
{
    /// <summary>One SST-2 row: the sentence and its label ("0" negative, "1" positive).</summary>
    public sealed class Review
    {
        [LoadColumn(0)] public string Sentence1 { get; set; } = "";
        [LoadColumn(1)] public string Label { get; set; } = "";
    }

    /// <summary>What the pipeline adds.</summary>
    public sealed class Prediction
    {
        public string PredictedLabel { get; set; } = "";
        public float[] Score { get; set; } = [];
    }
}
