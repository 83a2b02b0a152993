using System.CommandLine;
using System.Diagnostics;
using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Evaluation;
using Spectre.Console;

namespace Microsoft.ML.Bone.Cli.Demo;

// Microsoft.ML has a namespace named Command; here Command is System.CommandLine's type.
using Command = System.CommandLine.Command;

/// <summary>
/// <c>bone demo</c>: fine-tunes one base model with Bone and with LoRA at the same trainable-parameter budget (Bone's
/// block b = 2r of LoRA's rank r, equal on square weights), the same data, epochs, batch size and sequence length, and
/// compares them: metrics, trainable parameters, time and peak memory in one table, both loss curves in one PNG, and
/// both ML.NET model zips. With no arguments it runs on a task embedded in the tool (see <see cref="DemoTask"/>).
/// </summary>
internal static class DemoCommand
{
    private sealed record Run(string Name, AdapterKind Adapter, int Rank);

    private sealed record Outcome(Run Run, GlueEvaluation Metrics, AdapterParameterSummary Parameters, TimeSpan Time, long PeakBytes, string Zip, IReadOnlyList<Training.TrainingProgress> History);

    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Base model directory (a Hugging Face RoBERTa). Default: a small RoBERTa pre-trained on the embedded task." };
        var train = new Option<string?>("--train") { Description = "Training data (.tsv or .csv with a header row). Default: the embedded food reviews." };
        var dev = new Option<string?>("--dev") { Description = "Evaluation data, same columns. Default: 10% of --train held out (or the embedded test set)." };
        var text = new Option<string?>("--text-column") { Description = "Header of the text column (default: 'review' for the embedded task, else 'sentence')." };
        var label = new Option<string>("--label-column") { Description = "Header of the label column.", DefaultValueFactory = _ => "label" };
        var output = new Option<string>("--out") { Description = "Folder for bone.zip, lora.zip, demo-loss.png (and the embedded task's files).", DefaultValueFactory = _ => "bone-demo" };
        var rank = new Option<int>("--rank") { Description = "LoRA rank r; Bone gets block b = 2r, the same trainable parameters on square weights.", DefaultValueFactory = _ => 8 };
        var epochs = new Option<int>("--epochs") { DefaultValueFactory = _ => 3 };
        var batch = new Option<int>("--batch-size") { DefaultValueFactory = _ => 16 };
        var lr = new Option<double>("--learning-rate") { Description = "Peak learning rate of both runs (0 = each adapter's default for the base)." };
        var maxLength = new Option<int>("--max-length") { DefaultValueFactory = _ => 128 };
        var maxRows = new Option<int>("--max-rows") { Description = "Use at most this many training rows (0 = all)." };
        var threads = new Option<int>("--threads") { Description = "CPU threads per operation (0 = one per logical core)." };
        var command = new Command("demo", "Fine-tune Bone and LoRA side by side on one base and compare them (an embedded task by default).")
        {
            model, train, dev, text, label, output, rank, epochs, batch, lr, maxLength, maxRows, threads,
        };
        command.SetAction(p => CommandErrors.Run("demo", () => Execute(
            p.GetValue(model), p.GetValue(train), p.GetValue(dev), p.GetValue(text), p.GetValue(label)!, p.GetValue(output)!, p.GetValue(rank),
            p.GetValue(epochs), p.GetValue(batch), p.GetValue(lr), p.GetValue(maxLength), p.GetValue(maxRows), p.GetValue(threads))));
        return command;
    }

    private static int Execute(string? modelPath, string? trainPath, string? devPath, string? textColumn, string labelColumn, string outDir,
        int rank, int epochs, int batchSize, double learningRate, int maxLength, int maxRows, int threads)
    {
        // Every check a user can fail happens here, before minutes of training.
        if (rank <= 0) throw new ArgumentException($"--rank must be positive, got {rank}.");
        if (epochs <= 0) throw new ArgumentException($"--epochs must be positive, got {epochs}.");
        if (devPath is not null && trainPath is null) throw new ArgumentException("--dev needs --train: give the training data it belongs with.");
        if (modelPath is not null && !Directory.Exists(modelPath))
            throw new DirectoryNotFoundException($"--model {modelPath}: no such directory (give a Hugging Face RoBERTa folder with config.json, model.safetensors, vocab.json and merges.txt).");
        foreach (var (flag, path) in new[] { ("--train", trainPath), ("--dev", devPath) })
            if (path is not null && !File.Exists(path)) throw new FileNotFoundException($"{flag} {path}: file not found.");
        if (File.Exists(outDir)) throw new IOException($"--out {outDir}: is a file; give a folder.");
        Directory.CreateDirectory(outDir);
        CliOutputs.CheckWritableFolder("--out", outDir, outDir);

        // Pre-training and the warm-up draw from their own contexts, so the two timed fits get the same seeds whether or
        // not the base was made in this run.
        var ml = new MLContext(seed: 1);
        bool embedded = trainPath is null;
        string text = textColumn ?? (embedded ? DemoTask.TextColumn : "sentence");
        IDataView trainRows, devRows;
        string baseModel;
        if (embedded)
        {
            var (trainFile, testFile, tokenizer) = DemoTask.Extract(Path.Combine(outDir, "data"));
            Console.WriteLine($"Task: food reviews, 'great' (5 stars) or 'other' ({trainFile}, {testFile}).");
            baseModel = modelPath ?? DemoTask.PretrainedBase(new MLContext(seed: 7), trainFile, tokenizer, Path.Combine(outDir, "base"), threads);
            IDataView all = Load(ml, trainFile, text, labelColumn);
            // The small base was pre-trained on the first rows; the adapters see only the others.
            trainRows = modelPath is null ? ml.Data.SkipRows(all, DemoTask.PretrainingRows) : all;
            devRows = Load(ml, testFile, text, labelColumn);
        }
        else
        {
            baseModel = modelPath ?? throw new ArgumentException("--train needs --model: the base checkpoint to fine-tune (a Hugging Face RoBERTa folder).");
            IDataView all = Load(ml, trainPath!, text, labelColumn);
            // --max-rows caps the file before the split, so a held-out tenth stays a tenth of what is used.
            if (maxRows > 0 && devPath is null) all = ml.Data.TakeRows(all, maxRows);
            if (devPath is not null) (trainRows, devRows) = (all, Load(ml, devPath, text, labelColumn));
            else
            {
                var split = ml.Data.TrainTestSplit(all, testFraction: 0.1, seed: 1);
                (trainRows, devRows) = (split.TrainSet, split.TestSet);
                Console.WriteLine("No --dev given: 10% of --train is held out for evaluation.");
            }
        }
        if (maxRows > 0) trainRows = ml.Data.TakeRows(trainRows, maxRows);

        // The default learning rates suit real checkpoints; the small demo base learns at five times those (higher rates
        // make its short runs unstable for both methods).
        double Rate(AdapterKind kind) => learningRate > 0 ? learningRate : modelPath is null && embedded ? (kind == AdapterKind.Lora ? 2e-3 : 1e-3) : 0;
        Run[] runs = [new("Bone", AdapterKind.Bone, 2 * rank), new("LoRA", AdapterKind.Lora, rank)];
        Console.WriteLine($"Fine-tuning {baseModel} with Bone (b = {2 * rank}) and LoRA (r = {rank}): same data, {epochs} epochs, batch {batchSize}, up to {maxLength} tokens.");

        var keys = ml.Transforms.Conversion.MapValueToKey("Label").Fit(trainRows);
        IDataView devKeyed = keys.Transform(devRows);
        // One short untimed fit first, so neither timed run pays for the process's one-time costs (JIT, allocator growth).
        Warm(new MLContext(seed: 1), baseModel, trainRows, devKeyed, batchSize, maxLength, threads);
        var outcomes = new List<Outcome>();
        TrainingDisplay.WithProgressBars([.. runs.Select(r => r.Name)], reporters =>
        {
            for (int i = 0; i < runs.Length; i++)
            {
                Run run = runs[i];
                var options = new BoneTextClassificationOptions
                {
                    ModelPath = baseModel, Adapter = run.Adapter, Rank = run.Rank, LearningRate = Rate(run.Adapter), MaxEpochs = epochs,
                    BatchSize = batchSize, MaxSequenceLength = maxLength, Threads = threads, ValidationSet = devKeyed, Progress = reporters[i],
                };
                outcomes.Add(FitOne(ml, run, options, trainRows, devRows, outDir));
            }
        });

        string png = Path.Combine(outDir, "demo-loss.png");
        TrainingDisplay.SaveLossCurves([.. outcomes.Select(o => (o.Run.Name, o.History))], "Bone and LoRA, same base and budget", png);
        PrintTable(outcomes);
        Console.WriteLine($"Saved {string.Join(", ", outcomes.Select(o => o.Zip))} and {png}.");
        Console.WriteLine();
        Console.WriteLine("Run it on your own checkpoint and data:");
        Console.WriteLine("  bone demo --model /path/to/roberta-base --train train.tsv --dev dev.tsv --text-column sentence --label-column label");
        Console.WriteLine("then train one adapter with `bone classify train` (see `bone classify train --help`), or use the zips from ML.NET: mlContext.Bone.LoadModel(\"bone.zip\", out _).");
        return 0;
    }

    private static void Warm(MLContext ml, string baseModel, IDataView train, IDataView dev, int batchSize, int maxLength, int threads)
    {
        // Two steps and one validation over the whole dev set: the timed fits then find the process's heap grown.
        var options = new BoneTextClassificationOptions
        {
            ModelPath = baseModel, Adapter = AdapterKind.Bone, Rank = 8, MaxEpochs = 1, MaxSteps = 2, BatchSize = batchSize, MaxSequenceLength = maxLength,
            Threads = threads, ValidationSet = dev,
        };
        var warm = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Fit(ml.Data.TakeRows(train, 2 * batchSize));
        foreach (var t in ((IEnumerable<ITransformer>)warm).OfType<IDisposable>()) t.Dispose();
    }

    private static Outcome FitOne(MLContext ml, Run run, BoneTextClassificationOptions options, IDataView train, IDataView dev, string outDir)
    {
        var pipeline = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Bone.TextClassification(options))
            .Append(ml.Transforms.Conversion.MapKeyToValue("PredictedLabel"));
        var clock = Stopwatch.StartNew();
        ITransformer fitted;
        long peak;
        using (var memory = new PeakMemory())
        {
            fitted = pipeline.Fit(train);
            peak = memory.PeakAboveStart;
        }
        TimeSpan time = clock.Elapsed;
        var bone = ((IEnumerable<ITransformer>)fitted).OfType<BoneTextClassificationTransformer>().Single();
        GlueEvaluation metrics = ml.Bone.EvaluateGlue(fitted.Transform(dev), GlueTask.Sst2);
        string zip = Path.Combine(outDir, run.Name.ToLowerInvariant() + ".zip");
        ml.Bone.SaveModel(fitted, train.Schema, zip);
        var outcome = new Outcome(run, metrics, bone.ParameterSummary!.Value, time, peak, zip, bone.TrainingHistory);
        bone.Dispose();
        return outcome;
    }

    private static void PrintTable(IReadOnlyList<Outcome> outcomes)
    {
        string[] Cells(Outcome o) =>
        [
            $"{o.Run.Name} ({(o.Run.Adapter == AdapterKind.Lora ? "r" : "b")} = {o.Run.Rank})",
            $"{o.Metrics.Accuracy:F4}", $"{o.Metrics.Multiclass!.MacroAccuracy:F4}", $"{o.Metrics.Multiclass.LogLoss:F4}",
            $"{o.Parameters.Trainable:N0} ({100.0 * o.Parameters.Trainable / o.Parameters.Total:F2}%)",
            $"{o.Time.TotalSeconds:F1} s", $"{o.PeakBytes / 1048576.0:F0} MB", $"{new FileInfo(o.Zip).Length / 1024} KiB",
        ];
        string[] headers = ["adapter", "accuracy", "macro acc.", "log-loss", "trainable", "time", "peak mem.", "zip"];
        if (!TrainingDisplay.Interactive)
        {
            // A log has no width to fit: one markdown table, rows unbroken.
            Console.WriteLine("| " + string.Join(" | ", headers) + " |");
            Console.WriteLine("|" + string.Concat(headers.Select(_ => "---|")));
            foreach (var o in outcomes) Console.WriteLine("| " + string.Join(" | ", Cells(o)) + " |");
        }
        else
        {
            var table = new Table().Title("Bone and LoRA on the same base").AddColumns(headers);
            foreach (var o in outcomes) table.AddRow(Cells(o));
            AnsiConsole.Write(table);
        }
        Console.WriteLine($"Evaluated on {outcomes[0].Metrics.Count:N0} rows. Trainable parameters include the new classification head; "
            + "peak memory is the resident set's peak during the fit, above its size before.");
    }

    private static IDataView Load(MLContext ml, string path, string text, string label) =>
        CliData.Load(ml, path, [(text, "Sentence1")], (label, "Label", false));
}
