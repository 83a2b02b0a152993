using System.CommandLine;
using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Adapters.Bone;
using Microsoft.ML.Bone.Adapters.Lora;
using Microsoft.ML.Bone.Adapters.StateTuning;
using Microsoft.ML.Bone.Models;

namespace Microsoft.ML.Bone.Cli;

// Microsoft.ML has a namespace named Command; here Command is System.CommandLine's type.
using Command = System.CommandLine.Command;

/// <summary>
/// <c>bone params (--model PATH | --preset NAME) --adapter bone --rank 64</c>: trainable parameters of an adapter on a
/// model, from shapes alone (nothing is loaded), as the Bone paper's tables count them.
/// </summary>
internal static class ParamsCommand
{
    public static Command Create()
    {
        var model = new Option<string?>("--model") { Description = "Model directory or checkpoint file; only its config and tensor headers are read." };
        var preset = new Option<string?>("--preset") { Description = $"A model of the paper's tables instead: {string.Join(", ", ParameterCounts.PresetNames)}." };
        var adapter = new Option<AdapterKind>("--adapter") { Description = "Bone, Bat, MissMini, Lora, PiSSA, OLoRA or StateTuning.", DefaultValueFactory = _ => AdapterKind.Bone };
        var rank = new Option<int>("--rank") { Description = "Block size / rank.", DefaultValueFactory = _ => 64 };
        var miniR = new Option<int>("--mini-r") { Description = "MissMini only: the block's width along the output.", DefaultValueFactory = _ => 1 };
        var targets = new Option<string?>("--targets") { Description = "Comma-separated module names (default: every projection the paper adapts)." };
        var command = new Command("params", "Count an adapter's trainable parameters on a model from shapes alone.") { model, preset, adapter, rank, miniR, targets };
        command.SetAction(parse => CommandErrors.Run("params", () =>
        {
            string? path = parse.GetValue(model), name = parse.GetValue(preset);
            if ((path is null) == (name is null)) throw new ArgumentException("Give exactly one of --model and --preset.");
            using IPretrainedModel shapes = path is not null ? ModelRegistry.LoadShapes(path) : ParameterCounts.Preset(name!);
            IReadOnlyList<string> modules = parse.GetValue(targets) is { } list ? list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) : shapes.DefaultTargetModules;
            int r = parse.GetValue(rank);
            AdapterConfig config = parse.GetValue(adapter) switch
            {
                AdapterKind.Bone => new BoneConfig { R = r },
                AdapterKind.Bat => new BoneConfig { R = r, Variant = BoneVariant.Bat },
                AdapterKind.MissMini => new BoneConfig { R = r, Variant = BoneVariant.Mini, MiniR = parse.GetValue(miniR) },
                AdapterKind.Lora => new LoraConfig { R = r, Alpha = r },
                AdapterKind.PiSSA => new LoraConfig { R = r, Alpha = r, Init = LoraInit.PiSSA },
                AdapterKind.OLoRA => new LoraConfig { R = r, Alpha = r, Init = LoraInit.OLoRA },
                AdapterKind.StateTuning => new StateTuningConfig(),
                var other => throw new ArgumentException($"--adapter {other} trains every parameter; there is no adapter to count."),
            };
            if (config is not StateTuningConfig) config.TargetModules = modules;
            AdapterParameterSummary summary = ParameterCounts.Count(shapes, config);
            string what = config is StateTuningConfig ? "state tuning" : $"{parse.GetValue(adapter)} r={r} on {string.Join(", ", modules)}";
            Console.WriteLine($"{path ?? name} ({shapes.ModelType}), {what}");
            Console.WriteLine($"trainable params: {summary.Trainable:N0} ({summary.Trainable / 1e6:0.0}M) || all params: {summary.Total:N0} || trainable%: {summary.TrainablePercent:0.0000} ({summary.AdaptedLayers} adapted layers)");
            return 0;
        }));
        return command;
    }
}
