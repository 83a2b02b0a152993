using System.CommandLine;
using Microsoft.ML.Bone.Adapters;

namespace Microsoft.ML.Bone.Cli;

// Microsoft.ML has a namespace named Command; here Command is System.CommandLine's type.
using Command = System.CommandLine.Command;

/// <summary>
/// <c>bone convert --adapter IN --to miss|bone|lora [--model DIR] --out DIR</c>: a PEFT adapter folder in another
/// format: MISS (PEFT 0.17+), legacy BONE (PEFT 0.14–0.18), or an exactly equivalent LoRA for LoRA-only servers.
/// </summary>
internal static class ConvertCommand
{
    public static Command Create()
    {
        var adapter = new Option<string>("--adapter") { Description = "PEFT adapter directory to convert (BONE or MISS).", Required = true };
        var to = new Option<string>("--to") { Description = "miss (PEFT 0.17 and later), bone (PEFT 0.14–0.18) or lora (exact LoRA form of Bone / MiSS-mini).", Required = true };
        to.AcceptOnlyFromAmong("miss", "bone", "lora");
        var model = new Option<string?>("--model") { Description = "Base model directory; needed for --to lora (the layers' input sizes come from it)." };
        var output = new Option<string>("--out") { Description = "Output adapter directory; must not exist or be empty.", Required = true };
        var command = new Command("convert", "Convert a Bone / MiSS adapter to MISS, BONE or an equivalent LoRA adapter.") { adapter, to, model, output };
        command.SetAction(parse => CommandErrors.Run("convert", () =>
        {
            PeftConversionTarget target = parse.GetValue(to) switch
            {
                "bone" => PeftConversionTarget.Bone,
                "lora" => PeftConversionTarget.Lora,
                _ => PeftConversionTarget.Miss,
            };
            ConversionReport report = PeftAdapterConversion.Convert(parse.GetValue(adapter)!, parse.GetValue(output)!, target, parse.GetValue(model));
            foreach (string note in report.Notes) Console.WriteLine($"note: {note}");
            Console.WriteLine($"Converted {report.Layers} layers to {target.ToString().ToUpperInvariant()} in {parse.GetValue(output)}.");
            return 0;
        }));
        return command;
    }
}
