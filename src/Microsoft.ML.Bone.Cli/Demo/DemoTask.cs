using System.IO.Compression;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Models.Roberta;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Cli.Demo;

/// <summary>
/// The task <c>bone demo</c> runs when it is given no data: Amazon fine-food reviews labelled <c>great</c> (5 stars) or
/// <c>other</c> (4,000 training and 1,000 test rows, MIT, from R's modeldata package), embedded in the tool together
/// with roberta-base's tokenizer files, so the demo needs no download.
/// </summary>
internal static class DemoTask
{
    public const string TextColumn = "review", LabelColumn = "label";

    /// <summary>Training rows the small base is pre-trained on; the adapters are fine-tuned on the rest.</summary>
    public const int PretrainingRows = 2000;

    /// <summary>Writes the embedded files into <paramref name="directory"/>: train.tsv, test.tsv, vocab.json, merges.txt.</summary>
    public static (string Train, string Test, string Tokenizer) Extract(string directory)
    {
        Directory.CreateDirectory(directory);
        foreach (var (resource, file) in new[] { ("reviews-train.tsv.gz", "train.tsv"), ("reviews-test.tsv.gz", "test.tsv"), ("vocab.json.gz", "vocab.json"), ("merges.txt.gz", "merges.txt") })
        {
            using Stream packed = typeof(DemoTask).Assembly.GetManifestResourceStream("Demo." + resource)
                ?? throw new InvalidOperationException($"the demo's embedded file {resource} is missing from this build of the tool.");
            AtomicFile.Write(Path.Combine(directory, file), stream =>
            {
                using var gzip = new GZipStream(packed, CompressionMode.Decompress);
                gzip.CopyTo(stream);
            });
        }
        return (Path.Combine(directory, "train.tsv"), Path.Combine(directory, "test.tsv"), directory);
    }

    /// <summary>
    /// A small RoBERTa (4 layers of 128) with roberta-base's tokenizer, trained in full on the first
    /// <see cref="PretrainingRows"/> training reviews: it stands in for a pre-trained checkpoint, so that the adapters
    /// start from a model that already knows something. Reused when <paramref name="directory"/> already holds it.
    /// </summary>
    public static string PretrainedBase(MLContext ml, string train, string tokenizer, string directory, int threads)
    {
        string marker = Path.Combine(directory, "demo-base.txt");
        const string Recipe = "small RoBERTa 4x128, full fine-tuning on reviews 0-1999, 3 epochs, seed 7";
        if (File.Exists(marker) && File.ReadAllText(marker) == Recipe && File.Exists(Path.Combine(directory, SafetensorsCheckpoint.SingleFileName)))
        {
            Console.WriteLine($"Using the small base model pre-trained earlier in {directory}.");
            return directory;
        }
        Console.WriteLine($"No --model given: pre-training a small RoBERTa (4 layers of 128, roberta-base's tokenizer) in full on {PretrainingRows:N0} reviews.");
        Console.WriteLine("It stands in for a real checkpoint; the adapters are then fine-tuned on the other reviews.");
        // Built in a staging folder and moved into place at the end, so an interrupted run leaves no half-made base.
        string staging = directory.TrimEnd(Path.DirectorySeparatorChar) + ".partial";
        if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        string random = Path.Combine(staging, "random-init"), pretrained = Path.Combine(staging, "base");
        var config = new RobertaConfig
        {
            HiddenSize = 128, NumHiddenLayers = 4, NumAttentionHeads = 4, IntermediateSize = 256,
            MaxPositionEmbeddings = 130, TypeVocabSize = 1, LayerNormEps = 1e-5,
        };
        using (var model = new RobertaForSequenceClassification(config))
        {
            var generator = new Generator(7);
            using (no_grad())
                foreach (var (name, p) in model.named_parameters())
                    if (p.ndim == 2) p.copy_(randn(p.shape, generator: generator) * (name.Contains("embeddings") ? 0.02 : 1 / Math.Sqrt(p.shape[1])));
            model.SaveConfigAndWeights(random);
        }
        foreach (string file in new[] { "vocab.json", "merges.txt" }) File.Copy(Path.Combine(tokenizer, file), Path.Combine(random, file), overwrite: true);

        IDataView rows = ml.Data.TakeRows(CliData.Load(ml, train, [(TextColumn, "Sentence1")], (LabelColumn, "Label", false)), PretrainingRows);
        var options = new BoneTextClassificationOptions
        {
            ModelPath = random, Adapter = AdapterKind.FullFineTuning, LearningRate = 1e-3, MaxEpochs = 3, BatchSize = 32,
            MaxSequenceLength = 128, Threads = threads,
        };
        var estimator = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options));
        ITransformer fitted = TrainingDisplay.WithProgressBar(progress => { options.Progress = progress; return estimator.Fit(rows); });
        using (var bone = ((IEnumerable<ITransformer>)fitted).OfType<BoneTextClassificationTransformer>().Single())
            bone.ExportMergedModel(pretrained);

        // Keep the encoder only, like a plain RobertaModel checkpoint: each fine-tuning starts its own new head.
        string weights = Path.Combine(pretrained, SafetensorsCheckpoint.SingleFileName);
        using (var scope = NewDisposeScope())
        {
            Dictionary<string, Tensor> encoder;
            using (var file = SafetensorsFile.Open(weights))
                encoder = file.Entries.Where(e => !e.Name.StartsWith("classifier.", StringComparison.Ordinal)).ToDictionary(e => e.Name, e => file.Load(e.Name));
            SafetensorsWriter.Write(weights, encoder);
        }
        File.WriteAllText(Path.Combine(pretrained, Path.GetFileName(marker)), Recipe);
        if (Directory.Exists(directory)) Directory.Delete(directory, recursive: true);
        Directory.Move(pretrained, directory);
        Directory.Delete(staging, recursive: true);
        return directory;
    }
}
