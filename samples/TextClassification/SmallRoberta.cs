using Microsoft.ML;
using Microsoft.ML.Bone;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Models.Roberta;
using TorchSharp;
using static TorchSharp.torch;

namespace TextClassificationSample;

/// <summary>A small RoBERTa for running the sample offline, given a "pre-training" in full on a slice of SST-2.</summary>
internal static class SmallRoberta
{
    public static string Pretrain(MLContext ml, string tokenizerDirectory, string sst2, string work)
    {
        if (!File.Exists(Path.Combine(tokenizerDirectory, "vocab.json")))
            throw new FileNotFoundException($"No base model given and roberta-base's tokenizer files are not in {tokenizerDirectory}; pass a RoBERTa directory as the first argument.");
        string random = Path.Combine(work, "random");
        var config = new RobertaConfig
        {
            HiddenSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, IntermediateSize = 128,
            MaxPositionEmbeddings = 130, TypeVocabSize = 1, LayerNormEps = 1e-5,
        };
        var model = new RobertaForSequenceClassification(config);
        var generator = new Generator(7);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (p.ndim == 2) p.copy_(randn(p.shape, generator: generator) * (name.Contains("embeddings") ? 0.02 : 1 / Math.Sqrt(p.shape[1])));
        model.SaveConfigAndWeights(random);
        foreach (string file in new[] { "vocab.json", "merges.txt" }) File.Copy(Path.Combine(tokenizerDirectory, file), Path.Combine(random, file));

        Console.WriteLine("No base model given: pre-training a small RoBERTa in full on SST-2 rows 30,000–45,999…");
        IDataView slice = ml.Data.TakeRows(ml.Data.SkipRows(ml.Data.LoadFromTextFile<Review>(Path.Combine(sst2, "train.tsv"), separatorChar: '\t', hasHeader: true, allowQuoting: false), 30_000), 16_000);
        var fitted = ml.Transforms.Conversion.MapValueToKey("Label")
            .Append(ml.Bone.TextClassification(new BoneTextClassificationOptions
            {
                ModelPath = random, Adapter = AdapterKind.FullFineTuning, LearningRate = 1e-3, MaxEpochs = 1, BatchSize = 32, MaxSequenceLength = 64,
            }))
            .Fit(slice);
        string pretrained = Path.Combine(work, "pretrained");
        fitted.LastTransformer.ExportMergedModel(pretrained);

        // Keep the encoder only, like a plain RobertaModel checkpoint: the sample's fine-tuning starts a new head.
        string weights = Path.Combine(pretrained, SafetensorsCheckpoint.SingleFileName);
        Dictionary<string, Tensor> encoder;
        using (var file = SafetensorsFile.Open(weights))
            encoder = file.Entries.Where(e => !e.Name.StartsWith("classifier.", StringComparison.Ordinal)).ToDictionary(e => e.Name, e => file.Load(e.Name));
        SafetensorsWriter.Write(weights, encoder);
        return pretrained;
    }
}
