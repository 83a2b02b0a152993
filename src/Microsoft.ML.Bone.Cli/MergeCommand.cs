using System.CommandLine;
using Microsoft.ML.Bone.Adapters;

namespace Microsoft.ML.Bone.Cli;

// Microsoft.ML has a namespace named Command; here Command is System.CommandLine's type.
using Command = System.CommandLine.Command;

/// <summary><c>bone merge --model DIR --adapter DIR --out DIR</c>: a PEFT adapter folded into a Hugging Face checkpoint.</summary>
internal static class MergeCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Base model directory (config.json + model.safetensors, or sharded with model.safetensors.index.json).", Required = true };
        var adapter = new Option<string>("--adapter") { Description = "PEFT adapter directory (adapter_config.json + adapter_model.safetensors).", Required = true };
        var output = new Option<string>("--out") { Description = "Output directory for the merged model; must not exist or be empty.", Required = true };
        var unsafeMerge = new Option<bool>("--no-safe") { Description = "Skip the NaN / infinity check on merged weights." };
        var command = new Command("merge", "Merge a PEFT adapter (Bone, Bat, MiSS, LoRA) into a Hugging Face model directory.")
        {
            model, adapter, output, unsafeMerge,
        };
        command.SetAction(parse => CommandErrors.Run("merge", () =>
        {
            MergeReport report = PeftCheckpointMerger.Merge(parse.GetValue(model)!, parse.GetValue(adapter)!, parse.GetValue(output)!, safe: !parse.GetValue(unsafeMerge));
            Console.WriteLine($"Merged {report.MergedWeights.Count} weights, replaced {report.ReplacedTensors.Count} and added {report.AddedTensors.Count} modules-to-save tensors into {parse.GetValue(output)}.");
            return 0;
        }));
        return command;
    }
}
