using System.Diagnostics;
using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Adapters.Bone;
using Microsoft.ML.Bone.Models;
using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Tasks;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Benchmarks;

/// <summary>
/// A real-size checkpoint on this machine: write a LLaMA-shaped bf16 checkpoint, then, each in a fresh process, load it
/// (time, peak RSS against the file size) and run one Bone training step (bf16 base, seq 256) with and without
/// gradient checkpointing (time, peak RSS).
/// </summary>
internal static class RealSizeBenchmark
{
    public static int Run(string[] args)
    {
        string shape = Measured.Option(args, "--shape") ?? "tinyllama";
        string dir = Measured.Option(args, "--dir") ?? Path.Combine(Path.GetTempPath(), $"bone-bench-{shape}");
        int[] lengths = (Measured.Option(args, "--seq") ?? "256,1024").Split(',').Select(int.Parse).ToArray();
        LlamaConfig config = SyntheticCheckpoint.Shape(shape);
        var clock = Stopwatch.StartNew();
        long bytes = File.Exists(Path.Combine(dir, "config.json")) ? Directory.GetFiles(dir, "*.safetensors").Sum(f => new FileInfo(f).Length) : SyntheticCheckpoint.Write(dir, config);
        Console.WriteLine($"checkpoint {dir}: {bytes / 1e9:F2} GB of bf16 safetensors ({clock.Elapsed.TotalSeconds:F0} s to write)");
        try
        {
            Measured load = Measured.InChild("child-load", dir);
            Console.WriteLine($"| {shape} | load | {load["seconds"]:F1} s | peak RSS {load["peakRss"] / 1e9:F2} GB = {load["peakRss"] / bytes:F2} × file |");
            foreach (int seq in lengths)
                foreach (bool checkpointing in new[] { true, false })
                {
                    Measured step = Measured.InChild("child-step", dir, seq.ToString(), checkpointing.ToString());
                    Console.WriteLine($"| {shape} | Bone r=64 step, bf16, seq {seq}, checkpointing {(checkpointing ? "on" : "off")} | first {step["firstSeconds"]:F1} s, then {step["seconds"]:F1} s | peak RSS {step["peakRss"] / 1e9:F2} GB (resting {step["restingRss"] / 1e9:F2} GB, steps add {(step["peakRss"] - step["restingRss"]) / 1e9:F2} GB) |");
                }
        }
        finally
        {
            if (!args.Contains("--keep")) Directory.Delete(dir, recursive: true);
        }
        return 0;
    }

    public static int ChildLoad(string dir)
    {
        var clock = Stopwatch.StartNew();
        using var model = LlamaForCausalLM.FromPretrained(dir, new ModelLoadOptions { DType = null });
        double seconds = clock.Elapsed.TotalSeconds;
        if (model.model.embed_tokens.weight.dtype != ScalarType.BFloat16) throw new InvalidOperationException("the model did not stay bf16");
        var m = new Measured();
        m.Values["seconds"] = seconds;
        m.Values["peakRss"] = Measured.Rss().Peak;
        return m.Report();
    }

    public static int ChildStep(string dir, int seq, bool checkpointing)
    {
        torch.set_num_threads(Environment.ProcessorCount);
        using var model = LlamaForCausalLM.FromPretrained(dir, new ModelLoadOptions { DType = null });
        var adapted = AdapterModel.Inject(model, new BoneConfig { R = 64, TargetModules = LlamaConfig.AllProjections });
        model.GradientCheckpointing = checkpointing;
        model.train();
        var optimizer = optim.AdamW(adapted.TrainableParameters(), lr: 1e-4);
        long resting = Measured.Rss().Current;
        var generator = new Generator(1);
        var times = new List<double>();
        for (int step = 0; step < 2; step++)
        {
            var clock = Stopwatch.StartNew();
            using (NewDisposeScope())
            {
                optimizer.zero_grad();
                Tensor ids = randint(0, model.Config.VocabSize, [1, seq], dtype: ScalarType.Int64, generator: generator);
                CausalLanguageModeling.Loss(model.Forward(ids), ids).backward();
                optimizer.step();
            }
            times.Add(clock.Elapsed.TotalSeconds);
        }
        var m = new Measured();
        m.Values["firstSeconds"] = times[0];
        m.Values["seconds"] = times[1];
        m.Values["peakRss"] = Measured.Rss().Peak;
        m.Values["restingRss"] = resting;
        return m.Report();
    }

}
