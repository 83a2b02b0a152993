using System.CommandLine;
using System.Globalization;
using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Models;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Cli;

// Microsoft.ML has a namespace named Command; here Command is System.CommandLine's type.
using Command = System.CommandLine.Command;

/// <summary>
/// <c>bone logits --model DIR [--adapter DIR] --ids 0,31414,232,2 [--out FILE]</c>: one forward pass on one sequence,
/// the adapter applied unmerged; the logits ([num_labels] for RoBERTa, [seq_len, vocab] for LLaMA) go to a safetensors
/// file (one F32 tensor <c>logits</c>) and to stdout.
/// </summary>
internal static class LogitsCommand
{
    public static Command Create()
    {
        var model = new Option<string>("--model") { Description = "Model directory (config.json + safetensors; any registered architecture) or a supported single file.", Required = true };
        var adapter = new Option<string?>("--adapter") { Description = "Optional PEFT adapter directory, applied unmerged." };
        var ids = new Option<string>("--ids") { Description = "Comma-separated token ids of one sequence.", Required = true };
        var output = new Option<string>("--out") { Description = "Output safetensors file.", DefaultValueFactory = _ => "logits.safetensors" };
        var command = new Command("logits", "Run one forward pass and write the logits.") { model, adapter, ids, output };
        command.SetAction(parse => CommandErrors.Run("logits", () =>
        {
            long[] tokens = ParseIds(parse.GetValue(ids)!);
            using var scope = NewDisposeScope();
            Tensor logits = Forward(parse.GetValue(model)!, parse.GetValue(adapter), tokens);
            string path = parse.GetValue(output)!;
            SafetensorsWriter.Write(path, [new("logits", logits.to(ScalarType.Float32).contiguous())]);
            float[] values = logits.to(ScalarType.Float32).cpu().data<float>().ToArray();
            Console.WriteLine($"logits [{string.Join(", ", logits.shape)}] -> {path}");
            Console.WriteLine(string.Join(" ", values.Take(16).Select(v => v.ToString("G6", CultureInfo.InvariantCulture))) + (values.Length > 16 ? " …" : ""));
            return 0;
        }));
        return command;
    }

    private static long[] ParseIds(string text)
    {
        var parts = text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        if (parts.Length == 0) throw new ArgumentException("--ids: no token ids given.");
        return parts.Select(p => long.TryParse(p, NumberStyles.None, CultureInfo.InvariantCulture, out long id) ? id : throw new ArgumentException($"--ids: '{p}' is not a token id.")).ToArray();
    }

    private static Tensor Forward(string path, string? adapterDirectory, long[] tokens)
    {
        using var noGrad = no_grad();
        Tensor ids = tensor(tokens).unsqueeze(0);
        IPretrainedModel model = ModelRegistry.Load(path);
        CheckVocabulary(tokens, model.VocabSize, model.MaxSequenceLength);
        if (adapterDirectory is not null) PeftAdapterDirectory.Load(model.Module, adapterDirectory);
        model.Module.eval();
        return model switch
        {
            ISequenceClassifier classifier => classifier.Logits(ids, ones_like(ids))[0],
            ICausalLanguageModel lm => lm.Forward(ids)[0],
            _ => throw new InvalidOperationException($"{path}: a {model.ModelType} model has no logits to print."),
        };
    }

    private static void CheckVocabulary(long[] tokens, int vocabulary, int maxLength)
    {
        long bad = tokens.FirstOrDefault(t => t < 0 || t >= vocabulary, -1);
        if (bad >= 0) throw new ArgumentException($"--ids: token id {bad} is outside the vocabulary (0…{vocabulary - 1}).");
        if (tokens.Length > maxLength) throw new ArgumentException($"--ids: {tokens.Length} tokens exceed the model's {maxLength} positions.");
    }
}
