using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Adapters.Bone;
using Microsoft.ML.Bone.Adapters.Lora;
using Microsoft.ML.Bone.Models;
using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Models.Roberta;
using Microsoft.ML.Bone.Models.Rwkv6;
using Microsoft.ML.Bone.Nn;
using Microsoft.ML.Bone.Tasks;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Cli.Bench;

/// <summary>
/// The timed work of one benchmark case, run in a child process of its own (so its peak memory is its own): build,
/// warm up, time <c>steps</c> repetitions, report the median. bench_peer.py does the same work in PyTorch eager.
/// </summary>
internal static class BenchWorkloads
{
    public static Dictionary<string, double> Run(IReadOnlyDictionary<string, string> c)
    {
        TorchThreads.Ensure(Int(c, "threads"));
        manual_seed(1);
        return c["kind"] switch
        {
            "linear" => Linear(c),
            "train" => Train(c),
            "generate" => Generate(c),
            "infer" => Infer(c),
            "matmul" => Matmul(c),
            "score" => Score(c),
            _ => throw new ArgumentException($"unknown benchmark kind '{c["kind"]}'"),
        };
    }

    private static int Int(IReadOnlyDictionary<string, string> c, string key, int fallback = 0) =>
        c.TryGetValue(key, out string? v) ? int.Parse(v, CultureInfo.InvariantCulture) : fallback;

    /// <summary>The adapter of <paramref name="method"/> at equal trainable parameters: LoRA rank r, Bone / Bat block 2r.</summary>
    public static AdapterConfig? Adapter(string method, int r, IReadOnlyList<string> targets) => method switch
    {
        "base" or "full" => null,
        "lora" => new LoraConfig { R = r, Alpha = 2 * r, TargetModules = targets },
        "pissa" => new LoraConfig { R = r, Alpha = 2 * r, Init = LoraInit.PiSSA, PissaIterations = 4, TargetModules = targets },
        "bone" => new BoneConfig { R = 2 * r, TargetModules = targets },
        "mini" => new BoneConfig { R = 2 * r, Variant = BoneVariant.Mini, MiniR = 2 * r, TargetModules = targets },
        "bat" => new BoneConfig { R = 2 * r, Variant = BoneVariant.Bat, TargetModules = targets },
        "bat_ckpt" => new BoneConfig { R = 2 * r, Variant = BoneVariant.Bat, GradientCheckpointing = true, TargetModules = targets },
        _ => throw new ArgumentException($"unknown method '{method}'"),
    };

    private static double Median(int steps, Action step)
    {
        // Two warm-ups: the first call of a shape pays for kernel selection and first-touch page faults.
        for (int i = 0; i < 2; i++)
            using (NewDisposeScope()) step();
        var times = new List<double>();
        for (int i = 0; i < steps; i++)
        {
            var watch = Stopwatch.StartNew();
            using (NewDisposeScope()) step();
            times.Add(watch.Elapsed.TotalSeconds);
        }
        return times.Order().ElementAt(times.Count / 2);
    }

    private static Dictionary<string, double> Report(double seconds, double tokens, double flops, long rest)
    {
        var (peak, _) = Rss();
        return new() { ["seconds"] = seconds, ["tokens_per_s"] = tokens / seconds, ["gflops"] = flops / seconds / 1e9, ["rss_rest"] = rest, ["rss_peak"] = peak, ["rss_above"] = peak - rest };
    }

    /// <summary>Peak (VmHWM) and current (VmRSS) resident bytes of this process.</summary>
    public static (long Peak, long Current) Rss()
    {
        long Read(string key) => File.ReadLines("/proc/self/status").Where(l => l.StartsWith(key, StringComparison.Ordinal))
            .Select(l => long.Parse(l[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024).FirstOrDefault();
        return OperatingSystem.IsLinux() ? (Read("VmHWM:"), Read("VmRSS:")) : (Environment.WorkingSet, Environment.WorkingSet);
    }

    // One adapted linear layer, forward + backward (the input needs a gradient, as inside a model).
    private static Dictionary<string, double> Linear(IReadOnlyDictionary<string, string> c)
    {
        int inF = Int(c, "in"), outF = Int(c, "out"), tokens = Int(c, "tokens"), r = Int(c, "r", 8);
        var holder = new LinearHolder(inF, outF);
        holder.l.weight.requires_grad = false;
        if (Adapter(c["method"], r, ["l"]) is { } config) AdapterModel.Inject(holder, config);
        Tensor x = randn(tokens, inF).requires_grad_(true);
        long rest = Rss().Current;
        double seconds = Median(Int(c, "steps", 10), () => holder.l.call(x).sum().backward());
        return Report(seconds, tokens, 4.0 * tokens * inF * outF, rest);
    }

    private sealed class LinearHolder : nn.Module<Tensor, Tensor>
    {
        public readonly AdaptableLinear l;
        public LinearHolder(int inF, int outF) : base(nameof(LinearHolder)) { l = new AdaptableLinear(inF, outF, hasBias: false); RegisterComponents(); }
        public override Tensor forward(Tensor x) => l.call(x);
    }

    /// <summary>The models of the benchmark, by name (random weights in the real layouts).</summary>
    public static (IPretrainedModel Model, IReadOnlyList<string> Targets, long LinearParameters, int Layers, int Width) Model(string name) => name switch
    {
        "llama-512" => Llama(new LlamaConfig { VocabSize = 32000, HiddenSize = 512, IntermediateSize = 1408, NumHiddenLayers = 4, NumAttentionHeads = 8, NumKeyValueHeads = 8, HeadDim = 64, MaxPositionEmbeddings = 2048 }),
        "tinyllama" => Llama(new LlamaConfig { VocabSize = 32000, HiddenSize = 2048, IntermediateSize = 5632, NumHiddenLayers = 22, NumAttentionHeads = 32, NumKeyValueHeads = 4, HeadDim = 64, MaxPositionEmbeddings = 2048 }),
        "roberta-base" => Roberta(new RobertaConfig { MaxPositionEmbeddings = 514, TypeVocabSize = 1, LayerNormEps = 1e-5 }),
        "roberta-small" => Roberta(new RobertaConfig { HiddenSize = 256, NumHiddenLayers = 4, NumAttentionHeads = 4, IntermediateSize = 1024, MaxPositionEmbeddings = 514, TypeVocabSize = 1, LayerNormEps = 1e-5 }),
        "rwkv6-512" => Rwkv(new Rwkv6Config { VocabSize = 65536, HiddenSize = 512, NumHiddenLayers = 4, AttentionHiddenSize = 512, HeadSize = 64, IntermediateSize = 1792, TimeMixExtraDim = 32, TimeDecayExtraDim = 64 }),
        "rwkv6-1024" => Rwkv(new Rwkv6Config { VocabSize = 65536, HiddenSize = 1024, NumHiddenLayers = 8, AttentionHiddenSize = 1024, HeadSize = 64, IntermediateSize = 3584, TimeMixExtraDim = 32, TimeDecayExtraDim = 64 }),
        _ => throw new ArgumentException($"unknown model '{name}'"),
    };

    private static (IPretrainedModel, IReadOnlyList<string>, long, int, int) Llama(LlamaConfig c)
    {
        long kv = (long)c.NumKeyValueHeads * c.HeadDim;
        long perLayer = 2L * c.HiddenSize * c.HiddenSize + 2 * kv * c.HiddenSize + 3L * c.HiddenSize * c.IntermediateSize;
        return (new LlamaForCausalLM(c), LlamaConfig.AllProjections, perLayer * c.NumHiddenLayers + (long)c.VocabSize * c.HiddenSize, c.NumHiddenLayers, c.HiddenSize);
    }

    private static (IPretrainedModel, IReadOnlyList<string>, long, int, int) Roberta(RobertaConfig c) =>
        (new RobertaForSequenceClassification(c), ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"],
         (4L * c.HiddenSize * c.HiddenSize + 2L * c.HiddenSize * c.IntermediateSize) * c.NumHiddenLayers, c.NumHiddenLayers, c.HiddenSize);

    private static (IPretrainedModel, IReadOnlyList<string>, long, int, int) Rwkv(Rwkv6Config c) =>
        (new Rwkv6ForCausalLM(c), Rwkv6Config.AllLinears,
         (6L * c.HiddenSize * c.HiddenSize + 2L * c.HiddenSize * c.IntermediateSize) * c.NumHiddenLayers + (long)c.VocabSize * c.HiddenSize, c.NumHiddenLayers, c.HiddenSize);

    // A training step: forward, loss, backward, AdamW.
    private static Dictionary<string, double> Train(IReadOnlyDictionary<string, string> c)
    {
        var (model, targets, linear, layers, width) = Model(c["model"]);
        int batch = Int(c, "batch", 1), seq = Int(c, "seq", 256), r = Int(c, "r", 8);
        string method = c["method"];
        List<Parameter> trainable;
        if (Adapter(method, r, targets) is { } config) trainable = [.. AdapterModel.Inject(model.Module, config).TrainableParameters()];
        else
        {
            trainable = [.. model.Module.parameters()];
            foreach (var p in trainable) p.requires_grad = true;
        }
        model.Module.train();
        foreach (var d in model.Module.modules().OfType<Nn.Dropout>()) d.eval();   // same arithmetic as the peer, which has no dropout
        var optimizer = optim.AdamW(trainable, 1e-5);
        Tensor ids = randint(0, Math.Min(model.VocabSize, 30000), [batch, seq], dtype: ScalarType.Int64);
        Tensor labels = randint(0, 2, [batch], dtype: ScalarType.Int64);
        long rest = Rss().Current;
        double seconds = Median(Int(c, "steps", 3), () =>
        {
            optimizer.zero_grad();
            Tensor loss = model is ISequenceClassifier classifier
                ? nn.functional.cross_entropy(classifier.Logits(ids, ones_like(ids)), labels)
                : CausalLanguageModeling.Loss(((ICausalLanguageModel)model).Forward(ids), ids);
            loss.backward();
            optimizer.step();
        });
        // Forward 2·P·T; backward 2·P·T for activations, +2·P·T for weight gradients when every weight trains (full) or
        // Bat's dL/dW' (every adapted weight); attention 4·T·d per layer and token forward, twice that backward.
        double tokens = (double)batch * seq;
        double weightGrads = method == "full" ? linear : method.StartsWith("bat", StringComparison.Ordinal) ? linear - (model is Rwkv6ForCausalLM or LlamaForCausalLM ? (double)model.VocabSize * width : 0) : 0;
        double attention = model is Rwkv6ForCausalLM ? 0 : 12.0 * layers * seq * width;
        double flops = tokens * (4.0 * linear + 2.0 * weightGrads + attention);
        return Report(seconds, tokens, flops, rest);
    }

    // Generation tokens/s: KV-cached for LLaMA, state-carrying for RWKV-6, greedy.
    private static Dictionary<string, double> Generate(IReadOnlyDictionary<string, string> c)
    {
        var (model, _, linear, _, _) = Model(c["model"]);
        var lm = (ICausalLanguageModel)model;
        model.Module.eval();
        int batch = Int(c, "batch", 1), prompt = Int(c, "prompt", 32), tokens = Int(c, "tokens", 64);
        int[][] prompts = Enumerable.Range(0, batch).Select(b => Enumerable.Range(1, prompt).Select(i => (i * 7 + b * 13) % 30000 + 3).ToArray()).ToArray();
        var options = new GenerationOptions { MaxNewTokens = tokens };
        long rest = Rss().Current;
        double seconds = Median(Int(c, "steps", 3), () => TextGeneration.Generate(lm, prompts, options, new HashSet<int>(), 0));
        return Report(seconds, (double)batch * tokens, 2.0 * linear * batch * (tokens + prompt), rest);
    }

    // Inference forward (no gradients): the base model, the adapter merged, the adapter unmerged.
    private static Dictionary<string, double> Infer(IReadOnlyDictionary<string, string> c)
    {
        var (model, targets, linear, _, _) = Model(c["model"]);
        var lm = (ICausalLanguageModel)model;
        model.Module.eval();
        int batch = Int(c, "batch", 1), seq = Int(c, "seq", 256), r = Int(c, "r", 8);
        string method = c["method"], state = c.GetValueOrDefault("state", "unmerged");
        if (Adapter(method, r, targets) is { } config)
        {
            var adapted = AdapterModel.Inject(model.Module, config);
            using (no_grad()) foreach (var p in adapted.TrainableParameters()) p.add_(0.01);
            if (state == "merged") adapted.Merge();
        }
        Tensor ids = randint(0, 30000, [batch, seq], dtype: ScalarType.Int64);
        long rest = Rss().Current;
        double seconds;
        using (no_grad()) seconds = Median(Int(c, "steps", 5), () => lm.Forward(ids));
        return Report(seconds, (double)batch * seq, 2.0 * linear * batch * seq, rest);
    }

    private sealed class Row
    {
        public string Sentence1 { get; set; } = "";
        public string Label { get; set; } = "";
    }

    // Batch scoring through ML.NET: rows/s of a fitted text classifier's Transform, consumed by a cursor.
    private static Dictionary<string, double> Score(IReadOnlyDictionary<string, string> c)
    {
        string dir = Directory.CreateTempSubdirectory("bone-bench-score-").FullName;
        try
        {
            var (model, _, linear, _, _) = Model(c["model"]);
            ((RobertaForSequenceClassification)model).SaveConfigAndWeights(dir);
            model.Dispose();
            WriteByteLevelVocabulary(dir);
            int rows = Int(c, "rows", 256), seq = Int(c, "seq", 128);
            var ml = new MLContext(seed: 1);
            string Sentence(int i) => string.Join(' ', Enumerable.Range(0, seq / 6).Select(w => $"w{(i * 31 + w * 7) % 997}"));
            IDataView data = ml.Data.LoadFromEnumerable(Enumerable.Range(0, rows).Select(i => new Row { Sentence1 = Sentence(i), Label = (i % 2).ToString(CultureInfo.InvariantCulture) }).ToList());
            var options = new BoneTextClassificationOptions { ModelPath = dir, Adapter = AdapterKind.Bone, Rank = 8, MaxSteps = 1, BatchSize = 16, MaxSequenceLength = seq, Threads = Int(c, "threads") };
            ITransformer fitted = ml.Transforms.Conversion.MapValueToKey("Label").Append(ml.Bone.TextClassification(options)).Fit(ml.Data.TakeRows(data, 16));
            long rest = Rss().Current;
            double seconds = Median(Int(c, "steps", 3), () =>
            {
                IDataView scored = fitted.Transform(data);
                using var cursor = scored.GetRowCursor([scored.Schema["Score"]]);
                var getter = cursor.GetGetter<VBuffer<float>>(scored.Schema["Score"]);
                VBuffer<float> score = default;
                while (cursor.MoveNext()) getter(ref score);
            });
            ((IDisposable)fitted).Dispose();
            return Report(seconds, rows, 2.0 * linear * rows * seq, rest);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    // RoBERTa's four specials and the 256 byte symbols of GPT-2's byte-level alphabet, no merges: every byte one token.
    private static void WriteByteLevelVocabulary(string dir)
    {
        var vocabulary = new Dictionary<string, int> { ["<s>"] = 0, ["<pad>"] = 1, ["</s>"] = 2, ["<unk>"] = 3 };
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            bool printable = b is >= 33 and <= 126 or >= 161 and <= 172 or >= 174 and <= 255;
            vocabulary[((char)(printable ? b : next++)).ToString()] = 4 + b;
        }
        File.WriteAllText(Path.Combine(dir, "vocab.json"), System.Text.Json.JsonSerializer.Serialize(vocabulary));
        File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\n");
    }

    // The machine's fp32 / bf16 matrix-product rate, measured in the same run (the MFU denominator).
    private static Dictionary<string, double> Matmul(IReadOnlyDictionary<string, string> c)
    {
        int n = Int(c, "n", 2048);
        ScalarType dtype = c.GetValueOrDefault("dtype", "float32") == "bfloat16" ? ScalarType.BFloat16 : ScalarType.Float32;
        Tensor a = randn(n, n).to(dtype), b = randn(n, n).to(dtype);
        double seconds;
        using (no_grad()) seconds = Median(Int(c, "steps", 5), () => a.matmul(b));
        return Report(seconds, n, 2.0 * n * n * n, Rss().Current);
    }
}
