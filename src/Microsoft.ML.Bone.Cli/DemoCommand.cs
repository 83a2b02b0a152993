using System.CommandLine;
using System.Diagnostics;
using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Adapters.Bone;
using Microsoft.ML.Bone.IO;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Cli;

// Microsoft.ML has a namespace named Command; here Command is System.CommandLine's type.
using Command = System.CommandLine.Command;

/// <summary>
/// <c>bone demo --out DIR</c>: the whole adapter life cycle with nothing to download. Writes a small model in the
/// Hugging Face layout, fine-tunes a Bone (or Bat) adapter on a synthetic regression task, saves the adapter as a
/// PEFT folder, merges it with <c>bone merge</c>'s code path, and checks the merged model against the adapted one.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "Directory for base/, adapter/ and merged/ (must not exist or be empty).", Required = true };
        var variant = new Option<BoneVariant>("--variant") { Description = "Bone or Bat.", DefaultValueFactory = _ => BoneVariant.Bone };
        var steps = new Option<int>("--steps") { Description = "Training steps.", DefaultValueFactory = _ => 300 };
        var command = new Command("demo", "Fine-tune a Bone adapter on a tiny generated model, save it as PEFT files and merge it.") { output, variant, steps };
        command.SetAction(parse => CommandErrors.Run("demo", () => Run(parse.GetValue(output)!, parse.GetValue(variant), parse.GetValue(steps))));
        return command;
    }

    private static int Run(string outDir, BoneVariant variant, int steps)
    {
        if (steps <= 0) throw new ArgumentException($"--steps must be positive, got {steps}.");
        if (Directory.Exists(outDir) && Directory.EnumerateFileSystemEntries(outDir).Any())
            throw new IOException($"{outDir}: output directory exists and is not empty.");
        string baseDir = Path.Combine(outDir, "base"), adapterDir = Path.Combine(outDir, "adapter"), mergedDir = Path.Combine(outDir, "merged");
        using var scope = NewDisposeScope();
        manual_seed(1);

        // 1. A base model and a "teacher" that differs from it; the adapter must learn the difference.
        var model = new DemoMlp();
        Directory.CreateDirectory(baseDir);
        ModuleWeights.Save(model, Path.Combine(baseDir, "model.safetensors"));
        File.WriteAllText(Path.Combine(baseDir, "config.json"), DemoMlp.ConfigJson);
        var teacher = new DemoMlp();
        ModuleWeights.Load(teacher, SafetensorsCheckpoint.Open(baseDir));
        using (no_grad()) foreach (var p in teacher.parameters()) p.add_(0.15 * randn_like(p));
        Tensor inputs = randn(512, DemoMlp.Hidden);
        Tensor targets;
        using (no_grad()) targets = teacher.call(inputs);

        // 2. Bone on every projection, trained with AdamW.
        var adapted = AdapterModel.Inject(model, new BoneConfig { R = 8, Variant = variant, TargetModules = ["up_proj", "down_proj"] });
        Console.WriteLine($"{variant} r=8 on up_proj, down_proj: {adapted.Summary()}");
        var optimizer = optim.AdamW(adapted.TrainableParameters(), lr: 1e-2, weight_decay: 0);
        var clock = Stopwatch.StartNew();
        double first = 0, last = 0;
        for (int step = 0; step < steps; step++)
        {
            using var stepScope = NewDisposeScope();
            Tensor batch = arange(step * 64 % 512, step * 64 % 512 + 64, dtype: ScalarType.Int64);
            Tensor loss = nn.functional.mse_loss(model.call(inputs.index(batch)), targets.index(batch));
            optimizer.zero_grad();
            loss.backward();
            optimizer.step();
            last = loss.item<float>();
            if (step == 0) first = last;
            if (step % Math.Max(1, steps / 5) == 0 || step == steps - 1) Console.WriteLine($"step {step,4}  loss {last:F5}");
        }
        Console.WriteLine($"loss {first:F5} -> {last:F5} in {clock.Elapsed.TotalSeconds:F1} s");

        // 3. PEFT adapter folder, then the same merge `bone merge` runs.
        PeftAdapterDirectory.Save(adapted, adapterDir, baseModelNameOrPath: baseDir);
        MergeReport report = PeftCheckpointMerger.Merge(baseDir, adapterDir, mergedDir);
        Console.WriteLine($"saved {adapterDir}; merged {report.MergedWeights.Count} weights into {mergedDir}");

        // 4. The merged checkpoint, loaded into a plain model, must reproduce the adapted model.
        var merged = new DemoMlp();
        ModuleWeights.Load(merged, SafetensorsCheckpoint.Open(mergedDir));
        using (no_grad())
        {
            double diff = (merged.call(inputs) - model.call(inputs)).abs().max().item<float>();
            Console.WriteLine($"max |merged - adapted| = {diff:E2}");
            if (diff > 1e-4) throw new InvalidOperationException($"merged model differs from the adapted model by {diff:E2}.");
        }
        return 0;
    }

    /// <summary>Two residual MLP blocks with Hugging Face-style names (<c>model.layers.N.mlp.up_proj</c>).</summary>
    private sealed class DemoMlp : nn.Module<Tensor, Tensor>
    {
        public const int Hidden = 32, Intermediate = 64, Layers = 2;

        public const string ConfigJson = """
            {
              "model_type": "bone-demo-mlp",
              "hidden_size": 32,
              "intermediate_size": 64,
              "num_hidden_layers": 2
            }
            """;

        public readonly Inner model = new();

        public DemoMlp() : base(nameof(DemoMlp)) => RegisterComponents();

        public override Tensor forward(Tensor x) => model.call(x);

        public sealed class Inner : nn.Module<Tensor, Tensor>
        {
            public readonly TorchSharp.Modules.ModuleList<Block> layers = new(Enumerable.Range(0, Layers).Select(_ => new Block()).ToArray());

            public Inner() : base(nameof(Inner)) => RegisterComponents();

            public override Tensor forward(Tensor x)
            {
                foreach (Block b in layers) x = b.call(x);
                return x;
            }
        }

        public sealed class Block : nn.Module<Tensor, Tensor>
        {
            public readonly Mlp mlp = new();

            public Block() : base(nameof(Block)) => RegisterComponents();

            public override Tensor forward(Tensor x) => x + mlp.call(x);
        }

        public sealed class Mlp : nn.Module<Tensor, Tensor>
        {
            public readonly AdaptableLinear up_proj = new(Hidden, Intermediate);
            public readonly AdaptableLinear down_proj = new(Intermediate, Hidden);

            public Mlp() : base(nameof(Mlp)) => RegisterComponents();

            public override Tensor forward(Tensor x) => down_proj.call(nn.functional.gelu(up_proj.call(x)));
        }
    }
}
