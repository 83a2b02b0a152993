using Microsoft.ML.Bone.Models.Roberta;
using Microsoft.ML.Bone.Tests.Adapters;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.Models;

/// <summary>A tiny RoBERTa written to disk in the Hugging Face layout, plus an independent forward pass in plain tensor algebra.</summary>
internal static class TinyRoberta
{
    public static RobertaConfig Config(int labels = 3) => new()
    {
        VocabSize = 50, HiddenSize = 16, NumHiddenLayers = 2, NumAttentionHeads = 4, IntermediateSize = 32,
        MaxPositionEmbeddings = 40, TypeVocabSize = 1, LayerNormEps = 1e-5, PadTokenId = 1,
        Labels = Enumerable.Range(0, labels).Select(i => $"LABEL_{i}").ToArray(),
    };

    /// <summary>A model with deterministic weights (LayerNorm scales near 1), saved to <paramref name="directory"/>.</summary>
    public static RobertaForSequenceClassification Create(string directory, int labels = 3, int seed = 1)
    {
        var model = Fixtures.Deterministic(new RobertaForSequenceClassification(Config(labels)), seed);
        using (no_grad())
            foreach (var (name, p) in model.named_parameters())
                if (name.EndsWith("LayerNorm.weight", StringComparison.Ordinal)) p.add_(1);
        model.eval();
        model.SaveConfigAndWeights(directory);
        return model;
    }

    /// <summary>Transformers' position ids, by a plain loop.</summary>
    public static long[,] PositionIds(long[,] ids, long pad)
    {
        var positions = new long[ids.GetLength(0), ids.GetLength(1)];
        for (int b = 0; b < ids.GetLength(0); b++)
        {
            long count = 0;
            for (int t = 0; t < ids.GetLength(1); t++)
                positions[b, t] = ids[b, t] == pad ? pad : pad + ++count;
        }
        return positions;
    }

    /// <summary>
    /// Logits from the state dict alone: embedding lookup, LayerNorm by its formula, masked softmax attention, erf GELU,
    /// post-LN residuals and the tanh head. <paramref name="weight"/> may replace any linear weight (for adapters).
    /// </summary>
    public static Tensor Reference(IReadOnlyDictionary<string, Tensor> sd, RobertaConfig c, long[,] ids, Func<string, Tensor>? weight = null)
    {
        Tensor W(string name) => (weight?.Invoke(name) ?? sd[name]).to(ScalarType.Float64);
        Tensor P(string name) => sd[name].to(ScalarType.Float64);
        Tensor Linear(Tensor x, string module) => x.matmul(W(module + ".weight").t()) + P(module + ".bias");
        Tensor Norm(Tensor x, string module)
        {
            Tensor mean = x.mean([-1], keepdim: true);
            Tensor variance = (x - mean).pow(2).mean([-1], keepdim: true);
            return (x - mean) / (variance + c.LayerNormEps).sqrt() * P(module + ".weight") + P(module + ".bias");
        }

        int b = ids.GetLength(0), t = ids.GetLength(1), h = c.HiddenSize, heads = c.NumAttentionHeads, d = h / heads;
        Tensor idTensor = tensor(ids.Cast<long>().ToArray(), [b * t]);
        Tensor positions = tensor(PositionIds(ids, c.PadTokenId).Cast<long>().ToArray(), [b * t]);
        Tensor x = (P("roberta.embeddings.word_embeddings.weight").index_select(0, idTensor)
                    + P("roberta.embeddings.position_embeddings.weight").index_select(0, positions)
                    + P("roberta.embeddings.token_type_embeddings.weight")[0]).reshape(b, t, h);
        x = Norm(x, "roberta.embeddings.LayerNorm");
        var keyIsPad = new bool[b * t];
        for (int i = 0; i < b; i++) for (int j = 0; j < t; j++) keyIsPad[i * t + j] = ids[i, j] == c.PadTokenId;
        Tensor padKeys = tensor(keyIsPad, [b, 1, 1, t]);

        for (int l = 0; l < c.NumHiddenLayers; l++)
        {
            string p = $"roberta.encoder.layer.{l}.";
            Tensor Heads(string name) => Linear(x, p + "attention.self." + name).reshape(b, t, heads, d).permute(0, 2, 1, 3);
            Tensor scores = Heads("query").matmul(Heads("key").transpose(2, 3)) / Math.Sqrt(d);
            Tensor probs = scores.masked_fill(padKeys, double.NegativeInfinity).softmax(-1);
            Tensor context = probs.matmul(Heads("value")).permute(0, 2, 1, 3).reshape(b, t, h);
            Tensor attended = Norm(Linear(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm");
            Tensor z = Linear(attended, p + "intermediate.dense");
            Tensor gelu = 0.5 * z * (1 + (z / Math.Sqrt(2)).erf());
            x = Norm(Linear(gelu, p + "output.dense") + attended, p + "output.LayerNorm");
        }
        Tensor first = x.select(1, 0);
        return Linear(Linear(first, "classifier.dense").tanh(), "classifier.out_proj");
    }
}
