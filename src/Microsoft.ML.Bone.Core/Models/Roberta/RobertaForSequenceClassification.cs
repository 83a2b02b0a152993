using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Tasks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Models.Roberta;

// RoBERTa (Liu et al. 2019) as Hugging Face transformers implements it, one module per HF module and field names equal
// to the checkpoint's keys, so loading is a name match. Every linear layer is an AdaptableLinear so adapters can be
// injected by PEFT module names (query, key, value, attention.output.dense, intermediate.dense, output.dense).

/// <summary>RoBERTa encoder with the sentence-classification (or regression) head on the <c>&lt;s&gt;</c> token.</summary>
public sealed class RobertaForSequenceClassification : nn.Module<Tensor, Tensor, Tensor>, ISequenceClassifier
{
    /// <summary>The encoder.</summary>
    public readonly RobertaModel roberta;

    /// <summary>dense → tanh → out_proj on the first token.</summary>
    public readonly RobertaClassificationHead classifier;

    /// <summary>Builds the model with transformers' initialisation (N(0, initializer_range) weights, zero biases).</summary>
    public RobertaForSequenceClassification(RobertaConfig config) : base(nameof(RobertaForSequenceClassification))
    {
        Config = config;
        roberta = new RobertaModel(config);
        classifier = new RobertaClassificationHead(config);
        RegisterComponents();
        InitializeWeights(this, config.InitializerRange);
    }

    /// <summary>The configuration.</summary>
    public RobertaConfig Config { get; }

    /// <summary>Modules PEFT adapts in RoBERTa when asked for every projection.</summary>
    public static readonly IReadOnlyList<string> AllProjections = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"];

    /// <inheritdoc/>
    public nn.Module Module => this;

    /// <inheritdoc/>
    public int NumLabels => Config.NumLabels;

    /// <inheritdoc/>
    public Tensor Logits(Tensor inputIds, Tensor attentionMask) => forward(inputIds, attentionMask);

    /// <summary>Logits [B, num_labels] for ids [B, T] and attention mask [B, T] (1 = token, 0 = padding).</summary>
    public override Tensor forward(Tensor inputIds, Tensor attentionMask) => classifier.call(roberta.call(inputIds, attentionMask));

    /// <summary>
    /// Loads a Hugging Face RoBERTa directory: <c>RobertaForSequenceClassification</c>, or a plain
    /// <c>RobertaModel</c> / <c>RobertaForMaskedLM</c> (a new head of <paramref name="numLabels"/> outputs is
    /// initialised). Keys with or without the <c>roberta.</c> prefix load; pooler, LM head and position-id buffers
    /// are ignored.
    /// </summary>
    public static RobertaForSequenceClassification FromPretrained(string directory, int? numLabels = null, ScalarType dtype = ScalarType.Float32, Device? device = null)
    {
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: model directory not found.");
        RobertaConfig config = RobertaConfig.Load(directory);
        using var checkpoint = SafetensorsCheckpoint.Open(directory);
        bool bare = !checkpoint.Contains("roberta.embeddings.word_embeddings.weight") && checkpoint.Contains("embeddings.word_embeddings.weight");
        bool hasHead = checkpoint.Contains("classifier.out_proj.weight");
        if (hasHead)
        {
            long headLabels = checkpoint.Entry("classifier.out_proj.weight").Shape[0];
            if (numLabels is { } wanted && wanted != headLabels)
                throw new InvalidDataException($"{checkpoint.Description}: the classification head has {headLabels} outputs but {wanted} labels were asked for; use a checkpoint without a head (or with {wanted} outputs).");
            if (headLabels != config.NumLabels) config = config with { Labels = GenericLabels((int)headLabels) };
        }
        else if (numLabels is { } n && n != config.NumLabels)
        {
            config = config with { Labels = GenericLabels(n) };
        }

        var model = new RobertaForSequenceClassification(config);
        ModuleWeights.Load(model, checkpoint,
            name => SourceName(checkpoint, bare ? name.StartsWith("roberta.", StringComparison.Ordinal) ? name["roberta.".Length..] : name : name),
            optional: name => !hasHead && name.StartsWith("classifier.", StringComparison.Ordinal));
        if (dtype != ScalarType.Float32) model.to(dtype);
        if (device is not null) model.to(device);
        model.eval();
        return model;
    }

    /// <summary>Writes <c>config.json</c> and <c>model.safetensors</c> (HF names) to <paramref name="directory"/>.</summary>
    public void SaveConfigAndWeights(string directory)
    {
        Directory.CreateDirectory(directory);
        AtomicFile.Write(Path.Combine(directory, "config.json"), s => s.Write(System.Text.Encoding.UTF8.GetBytes(Config.ToJson())));
        ModuleWeights.Save(this, Path.Combine(directory, SafetensorsCheckpoint.SingleFileName));
    }

    // Checkpoints converted from TensorFlow name LayerNorm parameters gamma / beta.
    private static string SourceName(SafetensorsCheckpoint checkpoint, string name)
    {
        if (checkpoint.Contains(name)) return name;
        if (name.EndsWith(".LayerNorm.weight", StringComparison.Ordinal)) return name[..^"weight".Length] + "gamma";
        if (name.EndsWith(".LayerNorm.bias", StringComparison.Ordinal)) return name[..^"bias".Length] + "beta";
        return name;
    }

    private static string[] GenericLabels(int n) => Enumerable.Range(0, n).Select(i => $"LABEL_{i}").ToArray();

    private static void InitializeWeights(nn.Module module, double std)
    {
        using var noGrad = no_grad();
        foreach (var (_, m) in module.named_modules())
        {
            switch (m)
            {
                case AdaptableLinear linear:
                    nn.init.normal_(linear.weight, 0, std);
                    if (linear.bias is not null) nn.init.zeros_(linear.bias);
                    break;
                case Embedding embedding:
                    nn.init.normal_(embedding.weight!, 0, std);
                    break;
                case LayerNorm norm:
                    nn.init.ones_(norm.weight!);
                    nn.init.zeros_(norm.bias!);
                    break;
            }
        }
    }
}

/// <summary>The encoder: embeddings followed by post-LayerNorm transformer layers.</summary>
public sealed class RobertaModel : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Token, position and token-type embeddings.</summary>
    public readonly RobertaEmbeddings embeddings;

    /// <summary>The layers.</summary>
    public readonly RobertaEncoder encoder;

    /// <summary>Builds the encoder.</summary>
    public RobertaModel(RobertaConfig config) : base(nameof(RobertaModel))
    {
        embeddings = new RobertaEmbeddings(config);
        encoder = new RobertaEncoder(config);
        RegisterComponents();
    }

    /// <summary>Hidden states [B, T, H].</summary>
    public override Tensor forward(Tensor inputIds, Tensor attentionMask)
    {
        Tensor hidden = embeddings.call(inputIds);
        // Padded keys get the most negative value so softmax gives them no weight.
        Tensor additive = (1 - attentionMask.to(hidden.dtype)).unsqueeze(1).unsqueeze(2) * torch.finfo(hidden.dtype).min;
        return encoder.call(hidden, additive);
    }
}

/// <summary>Word + position + token-type embeddings, LayerNorm, dropout.</summary>
public sealed class RobertaEmbeddings : nn.Module<Tensor, Tensor>
{
    /// <summary>Token embeddings.</summary>
    public readonly Embedding word_embeddings;
    /// <summary>Position embeddings, indexed from padding_idx + 1.</summary>
    public readonly Embedding position_embeddings;
    /// <summary>Token-type embeddings (RoBERTa uses type 0 only).</summary>
    public readonly Embedding token_type_embeddings;
    /// <summary>Normalisation after the sum.</summary>
    public readonly LayerNorm LayerNorm;
    private readonly Dropout dropout;
    private readonly long _padding;

    /// <summary>Builds the embeddings.</summary>
    public RobertaEmbeddings(RobertaConfig config) : base(nameof(RobertaEmbeddings))
    {
        word_embeddings = nn.Embedding(config.VocabSize, config.HiddenSize);
        position_embeddings = nn.Embedding(config.MaxPositionEmbeddings, config.HiddenSize);
        token_type_embeddings = nn.Embedding(config.TypeVocabSize, config.HiddenSize);
        LayerNorm = nn.LayerNorm(config.HiddenSize, config.LayerNormEps);
        dropout = nn.Dropout(config.HiddenDropoutProb);
        _padding = config.PadTokenId;
        RegisterComponents();
    }

    /// <summary>
    /// Position ids count real tokens from padding_idx + 1 and give pads padding_idx, as transformers'
    /// <c>create_position_ids_from_input_ids</c>: ids [0, 31414, 232, 2, 1, 1] → positions [2, 3, 4, 5, 1, 1].
    /// </summary>
    public Tensor PositionIds(Tensor inputIds)
    {
        Tensor notPad = inputIds.ne(_padding).to(ScalarType.Int64);
        return notPad.cumsum(1) * notPad + _padding;
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor inputIds)
    {
        Tensor types = zeros_like(inputIds);
        Tensor sum = word_embeddings.call(inputIds) + token_type_embeddings.call(types) + position_embeddings.call(PositionIds(inputIds));
        return dropout.call(LayerNorm.call(sum));
    }
}

/// <summary>The stack of layers.</summary>
public sealed class RobertaEncoder : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>The layers, in order.</summary>
    public readonly ModuleList<RobertaLayer> layer;

    /// <summary>Builds <c>num_hidden_layers</c> layers.</summary>
    public RobertaEncoder(RobertaConfig config) : base(nameof(RobertaEncoder))
    {
        layer = new ModuleList<RobertaLayer>(Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new RobertaLayer(config)).ToArray());
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor hidden, Tensor additiveMask)
    {
        foreach (RobertaLayer l in layer) hidden = l.call(hidden, additiveMask);
        return hidden;
    }
}

/// <summary>Self-attention block then MLP block, each with residual and LayerNorm after (post-LN).</summary>
public sealed class RobertaLayer : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Self-attention with its output projection.</summary>
    public readonly RobertaAttention attention;
    /// <summary>MLP up-projection.</summary>
    public readonly RobertaIntermediate intermediate;
    /// <summary>MLP down-projection, residual, LayerNorm.</summary>
    public readonly RobertaOutput output;

    /// <summary>Builds the layer.</summary>
    public RobertaLayer(RobertaConfig config) : base(nameof(RobertaLayer))
    {
        attention = new RobertaAttention(config);
        intermediate = new RobertaIntermediate(config);
        output = new RobertaOutput(config);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor hidden, Tensor additiveMask)
    {
        Tensor attended = attention.call(hidden, additiveMask);
        return output.call(intermediate.call(attended), attended);
    }
}

/// <summary>Self-attention plus output projection.</summary>
public sealed class RobertaAttention : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Query / key / value projections.</summary>
    public readonly RobertaSelfAttention self;
    /// <summary>Output projection, residual, LayerNorm.</summary>
    public readonly RobertaSelfOutput output;

    /// <summary>Builds the block.</summary>
    public RobertaAttention(RobertaConfig config) : base(nameof(RobertaAttention))
    {
        self = new RobertaSelfAttention(config);
        output = new RobertaSelfOutput(config);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor hidden, Tensor additiveMask) => output.call(self.call(hidden, additiveMask), hidden);
}

/// <summary>Multi-head scaled dot-product attention over the sequence.</summary>
public sealed class RobertaSelfAttention : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Query projection.</summary>
    public readonly AdaptableLinear query;
    /// <summary>Key projection.</summary>
    public readonly AdaptableLinear key;
    /// <summary>Value projection.</summary>
    public readonly AdaptableLinear value;
    private readonly Dropout dropout;
    private readonly int _heads, _headSize;

    /// <summary>Builds the projections.</summary>
    public RobertaSelfAttention(RobertaConfig config) : base(nameof(RobertaSelfAttention))
    {
        _heads = config.NumAttentionHeads;
        _headSize = config.HiddenSize / config.NumAttentionHeads;
        query = new AdaptableLinear(config.HiddenSize, config.HiddenSize);
        key = new AdaptableLinear(config.HiddenSize, config.HiddenSize);
        value = new AdaptableLinear(config.HiddenSize, config.HiddenSize);
        dropout = nn.Dropout(config.AttentionProbsDropoutProb);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor hidden, Tensor additiveMask)
    {
        long b = hidden.shape[0], t = hidden.shape[1];
        Tensor Heads(AdaptableLinear projection) => projection.call(hidden).view(b, t, _heads, _headSize).transpose(1, 2);
        Tensor q = Heads(query), k = Heads(key), v = Heads(value);
        Tensor scores = q.matmul(k.transpose(-1, -2)) / Math.Sqrt(_headSize) + additiveMask;
        Tensor probabilities = dropout.call(scores.softmax(-1));
        return probabilities.matmul(v).transpose(1, 2).reshape(b, t, _heads * _headSize);
    }
}

/// <summary>Attention output projection, dropout, residual, LayerNorm.</summary>
public sealed class RobertaSelfOutput : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Output projection.</summary>
    public readonly AdaptableLinear dense;
    /// <summary>Post-residual normalisation.</summary>
    public readonly LayerNorm LayerNorm;
    private readonly Dropout dropout;

    /// <summary>Builds the block.</summary>
    public RobertaSelfOutput(RobertaConfig config) : base(nameof(RobertaSelfOutput))
    {
        dense = new AdaptableLinear(config.HiddenSize, config.HiddenSize);
        LayerNorm = nn.LayerNorm(config.HiddenSize, config.LayerNormEps);
        dropout = nn.Dropout(config.HiddenDropoutProb);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor hidden, Tensor residual) => LayerNorm.call(dropout.call(dense.call(hidden)) + residual);
}

/// <summary>MLP up-projection with exact (erf) GELU.</summary>
public sealed class RobertaIntermediate : nn.Module<Tensor, Tensor>
{
    /// <summary>Up-projection.</summary>
    public readonly AdaptableLinear dense;

    /// <summary>Builds the block.</summary>
    public RobertaIntermediate(RobertaConfig config) : base(nameof(RobertaIntermediate))
    {
        dense = new AdaptableLinear(config.HiddenSize, config.IntermediateSize);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor hidden) => nn.functional.gelu(dense.call(hidden));
}

/// <summary>MLP down-projection, dropout, residual, LayerNorm.</summary>
public sealed class RobertaOutput : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Down-projection.</summary>
    public readonly AdaptableLinear dense;
    /// <summary>Post-residual normalisation.</summary>
    public readonly LayerNorm LayerNorm;
    private readonly Dropout dropout;

    /// <summary>Builds the block.</summary>
    public RobertaOutput(RobertaConfig config) : base(nameof(RobertaOutput))
    {
        dense = new AdaptableLinear(config.IntermediateSize, config.HiddenSize);
        LayerNorm = nn.LayerNorm(config.HiddenSize, config.LayerNormEps);
        dropout = nn.Dropout(config.HiddenDropoutProb);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor hidden, Tensor residual) => LayerNorm.call(dropout.call(dense.call(hidden)) + residual);
}

/// <summary>Sentence head on the first token: dropout → dense → tanh → dropout → out_proj.</summary>
public sealed class RobertaClassificationHead : nn.Module<Tensor, Tensor>
{
    /// <summary>Hidden projection.</summary>
    public readonly AdaptableLinear dense;
    /// <summary>Projection to the labels.</summary>
    public readonly AdaptableLinear out_proj;
    private readonly Dropout dropout;

    /// <summary>Builds the head.</summary>
    public RobertaClassificationHead(RobertaConfig config) : base(nameof(RobertaClassificationHead))
    {
        dense = new AdaptableLinear(config.HiddenSize, config.HiddenSize);
        out_proj = new AdaptableLinear(config.HiddenSize, config.NumLabels);
        dropout = nn.Dropout(config.ClassifierDropout ?? config.HiddenDropoutProb);
        RegisterComponents();
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor hidden)
    {
        Tensor first = dropout.call(hidden.select(1, 0));
        return out_proj.call(dropout.call(dense.call(first).tanh()));
    }
}
