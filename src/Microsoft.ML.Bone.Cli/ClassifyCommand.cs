using System.CommandLine;
using System.Globalization;
using Microsoft.ML.Bone.Evaluation;

namespace Microsoft.ML.Bone.Cli;

// Microsoft.ML has a namespace named Command; here Command is System.CommandLine's type.
using Command = System.CommandLine.Command;

/// <summary>
/// <c>bone classify train|eval|predict</c>: text classification (or regression) over TSV / CSV files through the
/// ML.NET pipeline <c>MapValueToKey → mlContext.Bone.TextClassification → MapKeyToValue</c>.
/// </summary>
internal static class ClassifyCommand
{
    private sealed record Columns(string Text, string? Text2, string Label, bool Regression);

    public static Command Create()
    {
        var text = new Option<string>("--text-column") { Description = "Header of the text column.", DefaultValueFactory = _ => "sentence" };
        var text2 = new Option<string?>("--text2-column") { Description = "Header of the second text column, for sentence pairs." };
        var label = new Option<string>("--label-column") { Description = "Header of the label column.", DefaultValueFactory = _ => "label" };
        var regression = new Option<bool>("--regression") { Description = "The label is a number to predict (e.g. STS-B) rather than a class." };
        var task = new Option<GlueTask?>("--task") { Description = "GLUE task whose metrics to print (Sst2, Cola, Mrpc, Qnli, Rte, Mnli, Qqp, StsB)." };

        var model = new Option<string>("--model") { Description = "Base model directory (Hugging Face RoBERTa).", Required = true };
        var trainFile = new Option<string>("--train") { Description = "Training data (.tsv or .csv with a header row).", Required = true };
        var devFile = new Option<string?>("--dev") { Description = "Optional validation data, scored after each epoch and at the end." };
        var adapter = new Option<AdapterKind>("--adapter") { Description = "Bone, Bat, MissMini, Lora, PiSSA, OLoRA or FullFineTuning.", DefaultValueFactory = _ => AdapterKind.Bone };
        var threads = new Option<int>("--threads") { Description = "CPU threads per operation (0 = one per logical core)." };
        var miniR = new Option<int>("--mini-r") { Description = "MissMini only: the block's width along the output (0 = 1)." };
        var adapterDropout = new Option<double>("--adapter-dropout") { Description = "Dropout on the adapter path's input during training (Bone, MissMini, LoRA family)." };
        var rank = new Option<int>("--rank") { Description = "Block size / rank (0 = the adapter's default)." };
        var epochs = new Option<int>("--epochs") { DefaultValueFactory = _ => 3 };
        var batch = new Option<int>("--batch-size") { DefaultValueFactory = _ => 16 };
        var lr = new Option<double>("--learning-rate") { Description = "0 = the adapter's default." };
        var maxLength = new Option<int>("--max-length") { DefaultValueFactory = _ => 128 };
        var maxRows = new Option<int>("--max-rows") { Description = "Use at most this many training rows (0 = all)." };
        var zip = new Option<string>("--out") { Description = "Model zip to write.", Required = true };
        var plot = new Option<string?>("--plot") { Description = "Loss-curve PNG (default: next to the zip)." };
        var checkpointing = new Option<bool>("--gradient-checkpointing") { Description = "Recompute each layer in the backward pass: far less memory, about a third more compute." };
        var checkpoints = new CheckpointFlags();
        var train = new Command("train", "Fine-tune and save an ML.NET model zip.") { model, trainFile, devFile, text, text2, label, regression, task, adapter, rank, miniR, adapterDropout, threads, epochs, batch, lr, maxLength, maxRows, zip, plot, checkpointing };
        foreach (Option option in checkpoints.All) train.Options.Add(option);
        train.SetAction(p => CommandErrors.Run("classify train", () =>
        {
            var columns = new Columns(p.GetValue(text)!, p.GetValue(text2), p.GetValue(label)!, p.GetValue(regression));
            string zipPath = p.GetValue(zip)!;
            string png = CliOutputs.CheckModelAndPlot(zipPath, p.GetValue(plot), [("--model", p.GetValue(model)), ("--train", p.GetValue(trainFile)), ("--dev", p.GetValue(devFile))]);
            var ml = CliLog.NewContext();
            IDataView data = Load(ml, p.GetValue(trainFile)!, columns);
            if (p.GetValue(maxRows) > 0) data = ml.Data.TakeRows(data, p.GetValue(maxRows));
            var options = new BoneTextClassificationOptions
            {
                ModelPath = p.GetValue(model)!, Adapter = p.GetValue(adapter), Rank = p.GetValue(rank), MiniR = p.GetValue(miniR), AdapterDropout = p.GetValue(adapterDropout), Threads = p.GetValue(threads), MaxEpochs = p.GetValue(epochs), BatchSize = p.GetValue(batch),
                LearningRate = p.GetValue(lr), MaxSequenceLength = p.GetValue(maxLength), Sentence2ColumnName = columns.Text2 is null ? null : "Sentence2",
                GradientCheckpointing = p.GetValue(checkpointing),
            };
            checkpoints.Apply(p, options);
            IDataView? dev = p.GetValue(devFile) is { } devPath ? Load(ml, devPath, columns) : null;
            // Keys in sorted label order, not order of appearance: GLUE's F1 (MRPC, QQP) takes the second key as the
            // positive class, which must be "1" whichever label the file's first row has.
            var keys = columns.Regression ? null : ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: KeyOrdinality).Fit(data);
            if (dev is not null) options.ValidationSet = keys is null ? dev : keys.Transform(dev);
            IEstimator<ITransformer> pipeline = columns.Regression
                ? ml.Bone.TextClassification(options)
                : ml.Transforms.Conversion.MapValueToKey("Label", keyOrdinality: KeyOrdinality).Append(ml.Bone.TextClassification(options)).Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
            ITransformer fitted = TrainingDisplay.WithProgressBar(progress => { options.Progress = progress; return pipeline.Fit(data); });
            var bone = ((IEnumerable<ITransformer>)fitted).OfType<BoneTextClassificationTransformer>().Concat(fitted is BoneTextClassificationTransformer b ? [b] : []).Single();
            Console.WriteLine(bone.ParameterSummary?.ToString() ?? "full fine-tuning");
            ml.Bone.SaveModel(fitted, data.Schema, zipPath);
            CliOutputs.AfterSaving(zipPath, "loss curve", png, () => TrainingDisplay.SaveLossCurve(bone.TrainingHistory, png));
            Console.WriteLine($"saved {zipPath}; loss curve {png}");
            if (dev is not null) PrintMetrics(ml, fitted.Transform(dev), p.GetValue(task), columns);
            return 0;
        }));

        var modelZip = new Option<string>("--model") { Description = "Model zip written by `bone classify train`.", Required = true };
        var dataFile = new Option<string>("--data") { Description = "Data (.tsv or .csv with a header row).", Required = true };
        var baseModel = new Option<string?>("--base-model") { Description = "Base model directory, if it moved since training." };
        var eval = new Command("eval", "Score labelled data and print metrics.") { modelZip, dataFile, text, text2, label, regression, task, baseModel };
        eval.SetAction(p => CommandErrors.Run("classify eval", () =>
        {
            var columns = new Columns(p.GetValue(text)!, p.GetValue(text2), p.GetValue(label)!, p.GetValue(regression));
            var ml = CliLog.NewContext();
            ITransformer loaded = CliModels.Classifier(ml, p.GetValue(modelZip)!, out _, p.GetValue(baseModel));
            PrintMetrics(ml, loaded.Transform(Load(ml, p.GetValue(dataFile)!, columns)), p.GetValue(task), columns);
            return 0;
        }));

        var predictions = new Option<string>("--out") { Description = "Predictions TSV to write.", DefaultValueFactory = _ => "predictions.tsv" };
        var predict = new Command("predict", "Write a prediction (and scores) for every row.") { modelZip, dataFile, text, text2, predictions, baseModel };
        predict.SetAction(p => CommandErrors.Run("classify predict", () =>
        {
            var ml = CliLog.NewContext();
            ITransformer loaded = CliModels.Classifier(ml, p.GetValue(modelZip)!, out DataViewSchema inputSchema, p.GetValue(baseModel));
            // A classification pipeline starts by mapping Label to keys, so it needs a Label column even when there are no
            // labels to read: the text column stands in, and its values map to the missing key.
            bool needsLabel = inputSchema.GetColumnOrNull("Label")?.Type is TextDataViewType;
            var columns = new Columns(p.GetValue(text)!, p.GetValue(text2), p.GetValue(text)!, Regression: false);
            IDataView scored = loaded.Transform(Load(ml, p.GetValue(dataFile)!, columns, withLabel: needsLabel));
            int rows = WritePredictions(scored, p.GetValue(predictions)!);
            Console.WriteLine($"wrote {rows} predictions to {p.GetValue(predictions)}");
            return 0;
        }));

        return new Command("classify", "Text classification with Bone adapters: train, eval, predict.") { train, eval, predict };
    }

    private const Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality KeyOrdinality = Microsoft.ML.Transforms.ValueToKeyMappingEstimator.KeyOrdinality.ByValue;

    private static IDataView Load(MLContext ml, string path, Columns c, bool withLabel = true)
    {
        var texts = new List<(string, string)> { (c.Text, "Sentence1") };
        if (c.Text2 is not null) texts.Add((c.Text2, "Sentence2"));
        return CliData.Load(ml, path, texts, withLabel ? (c.Label, "Label", c.Regression) : null);
    }

    private static void PrintMetrics(MLContext ml, IDataView scored, GlueTask? task, Columns c)
    {
        GlueTask glueTask = task ?? (c.Regression ? GlueTask.StsB : GlueTask.Sst2);
        if (c.Regression)
        {
            GlueEvaluation glue = ml.Bone.EvaluateGlue(scored, glueTask);
            Console.WriteLine($"{glue}; RMSE {glue.Regression!.RootMeanSquaredError:F4}, R² {glue.Regression.RSquared:F4}");
            return;
        }
        GlueEvaluation result = ml.Bone.EvaluateGlue(scored, glueTask);
        Console.WriteLine($"{result}; macro accuracy {result.Multiclass!.MacroAccuracy:F4}, log-loss {result.Multiclass.LogLoss:F4}");
    }

    private static int WritePredictions(IDataView scored, string path)
    {
        var schema = scored.Schema;
        bool classes = schema["Score"].Type is VectorDataViewType;
        int rows = 0;
        Microsoft.ML.Bone.IO.AtomicFile.Write(path, stream =>
        {
            using var writer = new StreamWriter(stream, leaveOpen: true);
            using var cursor = scored.GetRowCursor(classes ? [schema["Score"], schema["PredictedLabel"]] : [schema["Score"]]);
            if (classes)
            {
                VBuffer<ReadOnlyMemory<char>> names = default;
                schema["Score"].GetSlotNames(ref names);
                writer.WriteLine("prediction\t" + string.Join('\t', names.DenseValues().Select(n => "score_" + n)));
                var score = cursor.GetGetter<VBuffer<float>>(schema["Score"]);
                var predicted = cursor.GetGetter<ReadOnlyMemory<char>>(schema["PredictedLabel"]);
                VBuffer<float> s = default;
                ReadOnlyMemory<char> p = default;
                while (cursor.MoveNext())
                {
                    score(ref s);
                    predicted(ref p);
                    writer.WriteLine(p + "\t" + string.Join('\t', s.DenseValues().Select(v => v.ToString("G6", CultureInfo.InvariantCulture))));
                    rows++;
                }
            }
            else
            {
                writer.WriteLine("prediction");
                var score = cursor.GetGetter<float>(schema["Score"]);
                float s = 0;
                while (cursor.MoveNext()) { score(ref s); writer.WriteLine(s.ToString("G6", CultureInfo.InvariantCulture)); rows++; }
            }
        });
        return rows;
    }
}
