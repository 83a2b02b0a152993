using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Nn;
using TorchSharp;
using TorchSharp.Modules;
using Dropout = Microsoft.ML.Bone.Nn.Dropout;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Models.Roberta;

// RoBERTa (Liu et al. 2019) as Hugging Face transformers implements it, one module per HF module and field names equal
// to the checkpoint's keys, so loading is a name match. Every linear layer is an AdaptableLinear so adapters can be
// injected by PEFT module names (query, key, value, attention.output.dense, intermediate.dense, output.dense).
// Attention goes through libtorch's fused scaled_dot_product_attention, except while training with attention dropout,
// where the eager form draws the dropout masks from the model's replayable random stream.

/// <summary>RoBERTa encoder with the sentence-classification (or regression) head on the <c>&lt;s&gt;</c> token.</summary>
public sealed class RobertaForSequenceClassification : nn.Module<Tensor, Tensor, Tensor>, ISequenceClassifier
{
    /// <summary>The encoder.</summary>
    public readonly RobertaModel roberta;

    /// <summary>dense → tanh → out_proj on the first token.</summary>
    public readonly RobertaClassificationHead classifier;

    /// <summary>Builds the model; with the default placement, weights get transformers' initialisation (N(0, initializer_range), zero biases).</summary>
    public RobertaForSequenceClassification(RobertaConfig config, ParameterPlacement? placement = null) : base(nameof(RobertaForSequenceClassification))
    {
        placement ??= ParameterPlacement.Default;
        Config = config;
        roberta = new RobertaModel(config, placement);
        classifier = new RobertaClassificationHead(config, placement);
        RegisterComponents();
    }

    /// <summary>The configuration.</summary>
    public RobertaConfig Config { get; }

    /// <summary>Modules PEFT adapts in RoBERTa when asked for every projection.</summary>
    public static readonly IReadOnlyList<string> AllProjections = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"];

    /// <inheritdoc/>
    public nn.Module Module => this;

    /// <inheritdoc/>
    public string ModelType => "roberta";

    /// <inheritdoc/>
    public IReadOnlyList<string> DefaultTargetModules => AllProjections;

    /// <inheritdoc/>
    public int NumLabels => Config.NumLabels;

    /// <inheritdoc/>
    public int VocabSize => Config.VocabSize;

    /// <summary>Positions start after the padding index, so max_position_embeddings − pad − 1 tokens fit (512 for roberta-base).</summary>
    public int MaxSequenceLength => Config.MaxPositionEmbeddings - Config.PadTokenId - 1;

    /// <inheritdoc/>
    public bool GradientCheckpointing { get => roberta.encoder.GradientCheckpointing; set => roberta.encoder.GradientCheckpointing = value; }

    /// <inheritdoc/>
    public AttentionImplementation Attention
    {
        get => roberta.encoder.layer[0].attention.self.Implementation;
        set { foreach (RobertaLayer l in roberta.encoder.layer) l.attention.self.Implementation = value; }
    }

    /// <inheritdoc/>
    public Tensor Logits(Tensor inputIds, Tensor attentionMask) => forward(inputIds, attentionMask);

    /// <summary>Logits [B, num_labels] for ids [B, T] and attention mask [B, T] (1 = token, 0 = padding).</summary>
    public override Tensor forward(Tensor inputIds, Tensor attentionMask) => classifier.call(roberta.call(inputIds, attentionMask));

    /// <summary>
    /// Loads a Hugging Face RoBERTa directory: <c>RobertaForSequenceClassification</c>, or a plain
    /// <c>RobertaModel</c> / <c>RobertaForMaskedLM</c> (a new head of <paramref name="numLabels"/> outputs is
    /// initialised from torch's global generator). Keys with or without the <c>roberta.</c> prefix load; pooler, LM
    /// head and position-id buffers are ignored. The configuration is checked against the checkpoint's shapes
    /// before anything is allocated, and each tensor is read once straight into the model.
    /// </summary>
    public static RobertaForSequenceClassification FromPretrained(string directory, int? numLabels = null, ModelLoadOptions? options = null)
    {
        options ??= ModelLoadOptions.Default;
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

        string first = bare ? "embeddings.word_embeddings.weight" : "roberta.embeddings.word_embeddings.weight";
        if (!checkpoint.Contains(first)) throw new InvalidDataException($"{checkpoint.Description}: no '{first}'; this is not a RoBERTa checkpoint.");
        ScalarType dtype = options.DType ?? checkpoint.Entry(first).DType.ToScalarType();
        Func<string, string?> rename = name => SourceName(checkpoint, bare ? name.StartsWith("roberta.", StringComparison.Ordinal) ? name["roberta.".Length..] : name : name);
        Func<string, bool> optional = name => !hasHead && name.StartsWith("classifier.", StringComparison.Ordinal);
        using (var shapes = new RobertaForSequenceClassification(config, ParameterPlacement.ShapesOnly(dtype)))
            ModuleWeights.CheckShapes(shapes, checkpoint, rename, optional);
        var model = new RobertaForSequenceClassification(config, ParameterPlacement.ForLoading(dtype, options.Device));
        try
        {
            IReadOnlyList<string> unused = ModuleWeights.Load(model, checkpoint, rename, optional, options.Fingerprint);
            string layers = bare ? "encoder.layer." : "roberta.encoder.layer.";
            if (unused.FirstOrDefault(n => n.StartsWith(layers, StringComparison.Ordinal)) is { } extra)
                throw new InvalidDataException($"{checkpoint.Description}: tensor '{extra}' belongs to a layer beyond the {config.NumHiddenLayers} that config.json's num_hidden_layers gives.");
            if (!hasHead) model.classifier.Initialize(config.InitializerRange, options.Random);
        }
        catch
        {
            model.Dispose();
            throw;
        }
        options.Fingerprint?.AddFile(Path.Combine(directory, "config.json"));
        model.eval();
        return model;
    }

    /// <inheritdoc/>
    public string ConfigJson() => Config.ToJson();

    /// <inheritdoc/>
    public void SaveConfigAndWeights(string directory, WeightTransform? transform = null) => SaveConfigAndWeights(directory, null, transform);

    /// <inheritdoc/>
    public void SaveConfigAndWeights(string directory, IReadOnlyList<string>? labelNames, WeightTransform? transform = null)
    {
        if (labelNames is not null && labelNames.Count != NumLabels) throw new ArgumentException($"{labelNames.Count} label names for {NumLabels} outputs.", nameof(labelNames));
        RobertaConfig config = labelNames is null ? Config : Config with { Labels = [.. labelNames] };
        Directory.CreateDirectory(directory);
        AtomicFile.Write(Path.Combine(directory, "config.json"), s => s.Write(System.Text.Encoding.UTF8.GetBytes(config.ToJson())));
        ModuleWeights.Save(this, Path.Combine(directory, SafetensorsCheckpoint.SingleFileName), transform: transform);
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
}

/// <summary>The encoder: embeddings followed by post-LayerNorm transformer layers.</summary>
public sealed class RobertaModel : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Token, position and token-type embeddings.</summary>
    public readonly RobertaEmbeddings embeddings;

    /// <summary>The layers.</summary>
    public readonly RobertaEncoder encoder;

    /// <summary>Builds the encoder.</summary>
    public RobertaModel(RobertaConfig config, ParameterPlacement placement) : base(nameof(RobertaModel))
    {
        embeddings = new RobertaEmbeddings(config, placement);
        encoder = new RobertaEncoder(config, placement);
        RegisterComponents();
    }

    /// <summary>Hidden states [B, T, H].</summary>
    public override Tensor forward(Tensor inputIds, Tensor attentionMask)
    {
        Tensor hidden = embeddings.call(inputIds);                                                          // [B, T, H]
        // Padded keys get the most negative value so softmax gives them no weight.                          [B, 1, 1, T]
        Tensor additive = (1 - attentionMask.to(hidden.dtype)).unsqueeze(1).unsqueeze(2) * torch.finfo(hidden.dtype).min;
        return encoder.call(hidden, additive);
    }
}

/// <summary>Word + position + token-type embeddings, LayerNorm, dropout.</summary>
public sealed class RobertaEmbeddings : nn.Module<Tensor, Tensor>
{
    /// <summary>Token embeddings.</summary>
    public readonly Nn.Embedding word_embeddings;
    /// <summary>Position embeddings, indexed from padding_idx + 1.</summary>
    public readonly Nn.Embedding position_embeddings;
    /// <summary>Token-type embeddings (RoBERTa uses type 0 only).</summary>
    public readonly Nn.Embedding token_type_embeddings;
    /// <summary>Normalisation after the sum.</summary>
    public readonly Nn.LayerNorm LayerNorm;
    private readonly Dropout dropout;
    private readonly long _padding;

    /// <summary>Builds the embeddings.</summary>
    public RobertaEmbeddings(RobertaConfig config, ParameterPlacement placement) : base(nameof(RobertaEmbeddings))
    {
        word_embeddings = new Nn.Embedding(config.VocabSize, config.HiddenSize, placement, config.InitializerRange);
        position_embeddings = new Nn.Embedding(config.MaxPositionEmbeddings, config.HiddenSize, placement, config.InitializerRange);
        token_type_embeddings = new Nn.Embedding(config.TypeVocabSize, config.HiddenSize, placement, config.InitializerRange);
        LayerNorm = new Nn.LayerNorm(config.HiddenSize, config.LayerNormEps, placement);
        dropout = new Dropout(config.HiddenDropoutProb);
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
    public RobertaEncoder(RobertaConfig config, ParameterPlacement placement) : base(nameof(RobertaEncoder))
    {
        layer = new ModuleList<RobertaLayer>(Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new RobertaLayer(config, placement)).ToArray());
        RegisterComponents();
    }

    /// <summary>Recompute each layer in the backward pass (training only).</summary>
    public bool GradientCheckpointing { get; set; }

    /// <inheritdoc/>
    public override Tensor forward(Tensor hidden, Tensor additiveMask)
    {
        bool checkpoint = GradientCheckpointing && training && is_grad_enabled();
        foreach (RobertaLayer l in layer)
        {
            Tensor input = hidden;
            hidden = checkpoint ? GradientCheckpoint.Run(l, input, h => l.call(h, additiveMask)) : Scoped.Run(() => l.call(input, additiveMask));
        }
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
    public RobertaLayer(RobertaConfig config, ParameterPlacement placement) : base(nameof(RobertaLayer))
    {
        attention = new RobertaAttention(config, placement);
        intermediate = new RobertaIntermediate(config, placement);
        output = new RobertaOutput(config, placement);
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
    public RobertaAttention(RobertaConfig config, ParameterPlacement placement) : base(nameof(RobertaAttention))
    {
        self = new RobertaSelfAttention(config, placement);
        output = new RobertaSelfOutput(config, placement);
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
    public RobertaSelfAttention(RobertaConfig config, ParameterPlacement placement) : base(nameof(RobertaSelfAttention))
    {
        _heads = config.NumAttentionHeads;
        _headSize = config.HiddenSize / config.NumAttentionHeads;
        query = new AdaptableLinear(config.HiddenSize, config.HiddenSize, true, placement, config.InitializerRange);
        key = new AdaptableLinear(config.HiddenSize, config.HiddenSize, true, placement, config.InitializerRange);
        value = new AdaptableLinear(config.HiddenSize, config.HiddenSize, true, placement, config.InitializerRange);
        dropout = new Dropout(config.AttentionProbsDropoutProb);
        RegisterComponents();
    }

    /// <summary>Fused (default) or eager attention.</summary>
    public AttentionImplementation Implementation { get; set; }

    /// <inheritdoc/>
    public override Tensor forward(Tensor hidden, Tensor additiveMask)
    {
        long b = hidden.shape[0], t = hidden.shape[1];
        Tensor Heads(AdaptableLinear projection) => projection.call(hidden).view(b, t, _heads, _headSize).transpose(1, 2);   // [B, H, T, D]
        Tensor context = Nn.Attention.Compute(Implementation, Heads(query), Heads(key), Heads(value), additiveMask, causal: false, dropout);
        return context.transpose(1, 2).reshape(b, t, _heads * _headSize);
    }
}

/// <summary>Attention output projection, dropout, residual, LayerNorm.</summary>
public sealed class RobertaSelfOutput : nn.Module<Tensor, Tensor, Tensor>
{
    /// <summary>Output projection.</summary>
    public readonly AdaptableLinear dense;
    /// <summary>Post-residual normalisation.</summary>
    public readonly Nn.LayerNorm LayerNorm;
    private readonly Dropout dropout;

    /// <summary>Builds the block.</summary>
    public RobertaSelfOutput(RobertaConfig config, ParameterPlacement placement) : base(nameof(RobertaSelfOutput))
    {
        dense = new AdaptableLinear(config.HiddenSize, config.HiddenSize, true, placement, config.InitializerRange);
        LayerNorm = new Nn.LayerNorm(config.HiddenSize, config.LayerNormEps, placement);
        dropout = new Dropout(config.HiddenDropoutProb);
        RegisterComponents();
    }

    // Copied from RobertaOutput.forward (transformers keeps the two classes apart to mirror the checkpoint's names).
    /// <inheritdoc/>
    public override Tensor forward(Tensor hidden, Tensor residual) => LayerNorm.call(dropout.call(dense.call(hidden)) + residual);
}

/// <summary>MLP up-projection with exact (erf) GELU.</summary>
public sealed class RobertaIntermediate : nn.Module<Tensor, Tensor>
{
    /// <summary>Up-projection.</summary>
    public readonly AdaptableLinear dense;

    /// <summary>Builds the block.</summary>
    public RobertaIntermediate(RobertaConfig config, ParameterPlacement placement) : base(nameof(RobertaIntermediate))
    {
        dense = new AdaptableLinear(config.HiddenSize, config.IntermediateSize, true, placement, config.InitializerRange);
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
    public readonly Nn.LayerNorm LayerNorm;
    private readonly Dropout dropout;

    /// <summary>Builds the block.</summary>
    public RobertaOutput(RobertaConfig config, ParameterPlacement placement) : base(nameof(RobertaOutput))
    {
        dense = new AdaptableLinear(config.IntermediateSize, config.HiddenSize, true, placement, config.InitializerRange);
        LayerNorm = new Nn.LayerNorm(config.HiddenSize, config.LayerNormEps, placement);
        dropout = new Dropout(config.HiddenDropoutProb);
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
    public RobertaClassificationHead(RobertaConfig config, ParameterPlacement placement) : base(nameof(RobertaClassificationHead))
    {
        dense = new AdaptableLinear(config.HiddenSize, config.HiddenSize, true, placement, config.InitializerRange);
        out_proj = new AdaptableLinear(config.HiddenSize, config.NumLabels, true, placement, config.InitializerRange);
        dropout = new Dropout(config.ClassifierDropout ?? config.HiddenDropoutProb);
        RegisterComponents();
    }

    /// <summary>A new head for a checkpoint that has none: N(0, <paramref name="std"/>) weights, zero biases (transformers' rule).</summary>
    public void Initialize(double std, Generator? random = null)
    {
        using var noGrad = no_grad();
        foreach (AdaptableLinear linear in new[] { dense, out_proj })
        {
            Nn.Initialize.Normal(linear.weight, std, random);
            linear.bias!.zero_();
        }
    }

    /// <inheritdoc/>
    public override Tensor forward(Tensor hidden)
    {
        Tensor first = dropout.call(hidden.select(1, 0));                                  // [B, H]
        return out_proj.call(dropout.call(dense.call(first).tanh()));                     // [B, labels]
    }
}
