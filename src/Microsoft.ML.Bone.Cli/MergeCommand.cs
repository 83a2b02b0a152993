using System.CommandLine;
using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Models;
using Microsoft.ML.Bone.IO;

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
            if (File.Exists(parse.GetValue(model)))
            {
                MergeSingleFile(parse.GetValue(model)!, parse.GetValue(adapter)!, parse.GetValue(output)!, !parse.GetValue(unsafeMerge));
                return 0;
            }
            MergeReport report = PeftCheckpointMerger.Merge(parse.GetValue(model)!, parse.GetValue(adapter)!, parse.GetValue(output)!, safe: !parse.GetValue(unsafeMerge));
            Console.WriteLine($"Merged {report.MergedWeights.Count} weights, replaced {report.ReplacedTensors.Count} and added {report.AddedTensors.Count} modules-to-save tensors into {parse.GetValue(output)}.");
            return 0;
        }));
        return command;
    }

    // Single-file checkpoints (RWKV .pth / rwkv.cpp .bin, llama2.c .bin) load through the registry; the merged model is
    // written as a BlinkDL .pth when --out ends in .pth (RWKV-6), otherwise as a Hugging Face directory.
    private static void MergeSingleFile(string modelFile, string adapterDirectory, string output, bool safe)
    {
        bool pth = output.EndsWith(".pth", StringComparison.OrdinalIgnoreCase);
        if (!pth) AtomicDirectory.CheckMissingOrEmpty(output);
        using var model = ModelRegistry.LoadCausalLM(modelFile);
        AdapterModel adapted = PeftAdapterDirectory.Load(model.Module, adapterDirectory);
        var merge = adapted.MergedWeightTransform(safe);
        if (pth)
        {
            if (model is not Models.Rwkv6.Rwkv6ForCausalLM rwkv) throw new ArgumentException($"--out {output}: only RWKV-6 models are written as .pth; give a directory.");
            Models.Rwkv6.Rwkv6Checkpoint.SavePth(rwkv, output, transform: merge);
        }
        else AtomicDirectory.Write(output, folder => model.SaveConfigAndWeights(folder, merge));
        Console.WriteLine($"Merged {adapted.AdaptedLayers.Count} adapted layers of {modelFile} into {output}.");
    }
}
