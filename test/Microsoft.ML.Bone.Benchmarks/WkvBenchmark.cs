using System.Diagnostics;
using System.Globalization;
using Microsoft.ML.Bone.Models.Rwkv6;
using Microsoft.ML.Bone.Nn;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Benchmarks;

/// <summary>
/// <c>wkv [--shape 1.6b|3b|7b|tiny] [--seq 512] [--batch 1] [--repeats 5]</c>: one RWKV-6 block of a real model's width
/// at a training length, forward + backward, timing the WKV operator (chunked and recurrent) against the block's
/// linear layers (the eight projections and the LoRA mixers), all in the same process and interleaved, so the ratio
/// holds however busy the machine is.
/// </summary>
internal static class WkvBenchmark
{
    public static int Run(string[] args)
    {
        string shape = Measured.Option(args, "--shape") ?? "1.6b";
        int seq = int.Parse(Measured.Option(args, "--seq") ?? "512", CultureInfo.InvariantCulture);
        int batch = int.Parse(Measured.Option(args, "--batch") ?? "1", CultureInfo.InvariantCulture);
        int repeats = int.Parse(Measured.Option(args, "--repeats") ?? "5", CultureInfo.InvariantCulture);
        var (width, ffn, mix, decay) = shape switch
        {
            "tiny" => (64, 224, 32, 64),
            "3b" => (2560, 8960, 32, 64),
            "7b" => (4096, 14336, 64, 128),
            _ => (2048, 7168, 32, 64),
        };
        var config = new Rwkv6Config { VocabSize = 256, HiddenSize = width, NumHiddenLayers = 1, AttentionHiddenSize = width, HeadSize = 64, IntermediateSize = ffn, TimeMixExtraDim = mix, TimeDecayExtraDim = decay };
        long h = config.NumHeads, n = config.HeadSize;
        Console.WriteLine($"RWKV-6 {shape} block: C={width}, H={h}, N={n}, F={ffn}; batch {batch} × {seq} tokens; forward + backward; {torch.get_num_threads()} threads");

        var generator = new torch.Generator(1);
        Tensor Input(params long[] s) => (randn(s, generator: generator) * 0.5).requires_grad_(true);
        Tensor r = Input(batch, seq, h, n), k = Input(batch, seq, h, n), v = Input(batch, seq, h, n);
        Tensor logW = (-(randn([batch, seq, h, n], generator: generator) - 1).exp()).requires_grad_(true);
        Tensor u = Input(h, n), s0 = zeros([batch, h, n, n]);
        var block = new Rwkv6Block(config, 1, ParameterPlacement.Default);
        Tensor x = Input(batch, seq, width);

        double Time(Action step)
        {
            using (NewDisposeScope()) step();   // warm-up
            var times = new List<double>();
            for (int i = 0; i < repeats; i++)
            {
                using var scope = NewDisposeScope();
                var watch = Stopwatch.StartNew();
                step();
                times.Add(watch.Elapsed.TotalSeconds);
            }
            return times.Order().ElementAt(times.Count / 2);
        }
        void Backward(Tensor y) => y.square().sum().backward();

        var results = new Dictionary<string, List<double>> { ["block"] = [], ["linears"] = [], ["wkv chunked"] = [], ["wkv recurrent"] = [] };
        for (int round = 0; round < 3; round++)
        {
            results["block"].Add(Time(() => Backward(block.Forward(x, null, null, 0, WkvImplementation.Chunked))));
            results["linears"].Add(Time(() =>
            {
                // What the block spends in matrix products: the eight projections and the LoRA mixers.
                var a = block.attention;
                var f = block.feed_forward;
                Tensor lora = x.matmul(a.time_maa_w1).tanh().view(batch * seq, 5, mix).transpose(0, 1).bmm(a.time_maa_w2).sum() + x.matmul(a.time_decay_w1).tanh().matmul(a.time_decay_w2).sum();
                Tensor y = a.receptance.call(x) + a.key.call(x) + a.value.call(x) + a.gate.call(x);
                y = a.output.call(y) + f.receptance.call(x) + f.value.call(f.key.call(x));
                Backward(y + lora);
            }));
            results["wkv chunked"].Add(Time(() => Backward(Wkv6.Chunked(r, k, v, logW, u, s0).Output)));
            if (seq <= 1024) results["wkv recurrent"].Add(Time(() => Backward(Wkv6.Recurrent(r, k, v, logW, u, s0).Output)));
        }
        double linears = results["linears"].Order().ElementAt(1);
        foreach (var (name, values) in results.Where(p => p.Value.Count > 0))
        {
            double median = values.Order().ElementAt(values.Count / 2);
            Console.WriteLine($"{name,-14} {median * 1000,9:F1} ms   {median / linears,6:F2} × the block's matmuls");
        }
        return 0;
    }
}
