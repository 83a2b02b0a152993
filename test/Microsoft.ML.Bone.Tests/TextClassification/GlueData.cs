using Microsoft.ML.Bone.Models.Roberta;
using Microsoft.ML.Data;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.TextClassification;

/// <summary>GLUE rows as shared/data has them, and a small RoBERTa that uses the real roberta-base tokenizer.</summary>
internal static class GlueData
{
    public sealed class Single
    {
        [LoadColumn(0)] public string Sentence1 { get; set; } = "";
        [LoadColumn(1)] public string Label { get; set; } = "";
    }

    public sealed class Pair
    {
        [LoadColumn(0)] public string Sentence1 { get; set; } = "";
        [LoadColumn(1)] public string Sentence2 { get; set; } = "";
        [LoadColumn(2)] public float Label { get; set; }
    }

    /// <summary>The first <paramref name="rows"/> rows of a single-sentence GLUE file (label kept as text).</summary>
    public static IDataView LoadSingle(MLContext ml, string task, string split, int rows = int.MaxValue)
    {
        IDataView all = ml.Data.LoadFromTextFile<Single>(SharedData.Path("glue", task, split + ".tsv"), separatorChar: '\t', hasHeader: true, allowQuoting: false);
        return ml.Data.TakeRows(all, rows);
    }

    public static IDataView LoadPair(MLContext ml, string task, string split, int rows = int.MaxValue)
    {
        IDataView all = ml.Data.LoadFromTextFile<Pair>(SharedData.Path("glue", task, split + ".tsv"), separatorChar: '\t', hasHeader: true, allowQuoting: false);
        return ml.Data.TakeRows(all, rows);
    }

    /// <summary>
    /// A small randomly initialised RoBERTa (hidden 32, 2 layers) with roberta-base's vocabulary and tokenizer files,
    /// written as a Hugging Face directory.
    /// </summary>
    public static string TinyModel(string directory, int hidden = 32, int seed = 7)
    {
        var config = new RobertaConfig
        {
            VocabSize = 50265, HiddenSize = hidden, NumHiddenLayers = 2, NumAttentionHeads = 4, IntermediateSize = 2 * hidden,
            MaxPositionEmbeddings = 130, TypeVocabSize = 1, LayerNormEps = 1e-5, HiddenDropoutProb = 0.1, AttentionProbsDropoutProb = 0.1,
        };
        using var scope = NewDisposeScope();
        // Random weights from a private generator: reproducible even while other tests use torch's global one.
        var generator = new torch.Generator((ulong)seed);
        var model = new RobertaForSequenceClassification(config);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
            {
                if (name.EndsWith("LayerNorm.weight", StringComparison.Ordinal)) p.fill_(1);
                else if (name.EndsWith(".bias", StringComparison.Ordinal)) p.zero_();
                // Embeddings at transformers' N(0, 0.02), which LayerNorm rescales and Adam can move; projections at
                // std 1/√fan_in so that attention mixes the tokens (at 0.02 a random encoder passes almost nothing to <s>).
                else p.copy_(randn(p.shape, generator: generator) * (name.Contains("embeddings") ? 0.02 : 1 / Math.Sqrt(p.shape[1])));
            }
        Directory.CreateDirectory(directory);
        model.SaveConfigAndWeights(directory);
        DropHead(directory);
        foreach (string file in new[] { "vocab.json", "merges.txt" })
            File.Copy(SharedData.Path("tokenizers", "roberta", file), Path.Combine(directory, file), overwrite: true);
        return directory;
    }

    /// <summary>Rewrites a checkpoint without its classifier, as a plain RobertaModel: the head is created per task at fit time.</summary>
    public static void DropHead(string directory)
    {
        string path = Path.Combine(directory, "model.safetensors");
        using var scope = NewDisposeScope();
        Dictionary<string, Tensor> encoder;
        using (var file = Microsoft.ML.Bone.IO.SafetensorsFile.Open(path))
            encoder = file.Entries.Where(e => !e.Name.StartsWith("classifier.")).ToDictionary(e => e.Name, e => file.Load(e.Name));
        Microsoft.ML.Bone.IO.SafetensorsWriter.Write(path, encoder);
    }

    /// <summary>
    /// A tiny base that knows something, as a pre-trained checkpoint would: the random tiny model trained in full on
    /// SST-2 rows 30,000–45,999 (disjoint from the rows the tests fine-tune on), exported, head removed.
    /// </summary>
    public static string PretrainedTinyModel(string directory)
    {
        string random = TinyModel(Path.Combine(directory, "random"), hidden: 64);
        var ml = new MLContext(seed: 3);
        IDataView slice = ml.Data.SkipRows(LoadSingle(ml, "sst2", "train"), 30_000);
        var pretraining = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Bone.TextClassification(new BoneTextClassificationOptions
            {
                ModelPath = random, Adapter = AdapterKind.FullFineTuning, LearningRate = 1e-3, MaxEpochs = 1, BatchSize = 32, MaxSequenceLength = 64,
            }));
        var fitted = pretraining.Fit(ml.Data.TakeRows(slice, 16_000));
        var history = fitted.LastTransformer.TrainingHistory;
        Console.WriteLine($"pre-training loss {history.Take(20).Average(h => h.Loss):F3} -> {history.TakeLast(20).Average(h => h.Loss):F3}");
        string pretrained = Path.Combine(directory, "pretrained");
        fitted.LastTransformer.ExportMergedModel(pretrained);
        DropHead(pretrained);
        return pretrained;
    }
}
