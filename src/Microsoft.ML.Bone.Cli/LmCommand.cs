using System.CommandLine;
using System.Text.Json;

namespace Microsoft.ML.Bone.Cli;

// Microsoft.ML has a namespace named Command; here Command is System.CommandLine's type.
using Command = System.CommandLine.Command;

/// <summary>
/// <c>bone lm train|eval|generate</c>: instruction tuning of LLaMA models over JSONL files. The field options default
/// to GSM8K's <c>question</c> / <c>answer</c>.
/// </summary>
internal static class LmCommand
{
    private sealed class Pair
    {
        public string Prompt { get; set; } = "";
        public string Response { get; set; } = "";
    }

    public static Command Create()
    {
        var promptField = new Option<string>("--prompt-field") { DefaultValueFactory = _ => "question" };
        var responseField = new Option<string>("--response-field") { DefaultValueFactory = _ => "answer" };
        var maxRows = new Option<int>("--max-rows") { Description = "Use at most this many rows (0 = all)." };
        var maxNew = new Option<int>("--max-new-tokens") { DefaultValueFactory = _ => 256 };

        var model = new Option<string>("--model") { Description = "Causal LM directory (LLaMA, Mistral, Qwen2: config.json, safetensors, tokenizer) or llama2.c .bin.", Required = true };
        var tokenizer = new Option<string?>("--tokenizer") { Description = "tokenizer.model (or a folder with the tokenizer files), when not next to the model." };
        var trainFile = new Option<string>("--train") { Description = "Training JSONL.", Required = true };
        var adapter = new Option<AdapterKind>("--adapter") { Description = "Bone, Bat, MissMini, Lora, PiSSA, OLoRA or FullFineTuning.", DefaultValueFactory = _ => AdapterKind.Bone };
        var threads = new Option<int>("--threads") { Description = "CPU threads per operation (0 = one per logical core)." };
        var miniR = new Option<int>("--mini-r") { Description = "MissMini only: the block's width along the output (0 = 1)." };
        var adapterDropout = new Option<double>("--adapter-dropout") { Description = "Dropout on the adapter path's input during training (Bone, MissMini, LoRA family)." };
        var rank = new Option<int>("--rank");
        var epochs = new Option<int>("--epochs") { DefaultValueFactory = _ => 1 };
        var batch = new Option<int>("--batch-size") { DefaultValueFactory = _ => 4 };
        var lr = new Option<double>("--learning-rate");
        var maxLength = new Option<int>("--max-length") { DefaultValueFactory = _ => 512 };
        var zip = new Option<string>("--out") { Description = "Model zip to write.", Required = true };
        var plot = new Option<string?>("--plot") { Description = "Loss-curve PNG (default: next to the zip)." };
        var checkpointing = new Option<bool>("--gradient-checkpointing") { Description = "Recompute each layer in the backward pass: far less memory, about a third more compute." };
        var dtype = new Option<BaseDType>("--dtype") { Description = "Precision of the frozen base: Float32, BFloat16 or Float16.", DefaultValueFactory = _ => BaseDType.Float32 };
        var checkpoints = new CheckpointFlags();
        var train = new Command("train", "Instruction-tune and save an ML.NET model zip.") { model, tokenizer, trainFile, promptField, responseField, maxRows, adapter, rank, miniR, adapterDropout, threads, epochs, batch, lr, maxLength, maxNew, zip, plot, checkpointing, dtype };
        foreach (Option option in checkpoints.All) train.Options.Add(option);
        train.SetAction(p => CommandErrors.Run("lm train", () =>
        {
            string zipPath = p.GetValue(zip)!;
            string png = CliOutputs.CheckModelAndPlot(zipPath, p.GetValue(plot), [("--model", p.GetValue(model)), ("--tokenizer", p.GetValue(tokenizer)), ("--train", p.GetValue(trainFile))]);
            var ml = CliLog.NewContext();
            IDataView data = Load(ml, p.GetValue(trainFile)!, p.GetValue(promptField)!, p.GetValue(responseField)!, p.GetValue(maxRows));
            var options = new BoneCausalLMOptions
            {
                ModelPath = p.GetValue(model)!, TokenizerPath = p.GetValue(tokenizer), Adapter = p.GetValue(adapter), Rank = p.GetValue(rank), MiniR = p.GetValue(miniR), AdapterDropout = p.GetValue(adapterDropout), Threads = p.GetValue(threads), MaxEpochs = p.GetValue(epochs),
                BatchSize = p.GetValue(batch), LearningRate = p.GetValue(lr), MaxSequenceLength = p.GetValue(maxLength), MaxNewTokens = p.GetValue(maxNew),
                GradientCheckpointing = p.GetValue(checkpointing), DType = p.GetValue(dtype),
            };
            checkpoints.Apply(p, options);
            BoneCausalLMTransformer fitted = TrainingDisplay.WithProgressBar(progress => { options.Progress = progress; return ml.Bone.CausalLM(options).Fit(data); });
            Console.WriteLine(fitted.ParameterSummary?.ToString() ?? "full fine-tuning");
            ml.Bone.SaveModel(fitted, data.Schema, zipPath);
            CliOutputs.AfterSaving(zipPath, "loss curve", png, () => TrainingDisplay.SaveLossCurve(fitted.TrainingHistory, png));
            Console.WriteLine($"saved {zipPath}; loss curve {png}");
            return 0;
        }));

        var modelZip = new Option<string>("--model") { Description = "Model zip written by `bone lm train`.", Required = true };
        var dataFile = new Option<string>("--data") { Description = "JSONL with prompts and reference responses.", Required = true };
        var eval = new Command("eval", "Loss, perplexity and final-answer accuracy on JSONL data.") { modelZip, dataFile, promptField, responseField, maxRows };
        eval.SetAction(p => CommandErrors.Run("lm eval", () =>
        {
            var ml = CliLog.NewContext();
            // The data first: a mistake there is found in a moment, before a model of gigabytes is loaded.
            IDataView data = Load(ml, p.GetValue(dataFile)!, p.GetValue(promptField)!, p.GetValue(responseField)!, p.GetValue(maxRows));
            var loaded = CliModels.CausalLM(ml, p.GetValue(modelZip)!);
            Console.WriteLine(ml.Bone.EvaluateCausalLM(loaded.Transform(data)));
            return 0;
        }));

        var prompt = new Option<string>("--prompt") { Description = "The prompt to complete.", Required = true };
        var generate = new Command("generate", "Stream a completion for one prompt.") { modelZip, prompt };
        generate.SetAction(p => CommandErrors.Run("lm generate", () =>
        {
            var ml = CliLog.NewContext();
            var loaded = CliModels.CausalLM(ml, p.GetValue(modelZip)!);
            Console.WriteLine(loaded.Complete([p.GetValue(prompt)!])[0]);
            return 0;
        }));

        return new Command("lm", "Causal language models with Bone adapters: train, eval, generate.") { train, eval, generate };
    }

    private static IDataView Load(MLContext ml, string path, string promptField, string responseField, int maxRows)
    {
        var rows = new List<Pair>();
        int line = 0;
        foreach (string text in Microsoft.ML.Bone.IO.InputFile.ReadLines(path))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text)) continue;
            try
            {
                using var doc = JsonDocument.Parse(text);
                string Field(string name) => doc.RootElement.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()! : throw new InvalidDataException($"{path}:{line}: no string field '{name}'.");
                rows.Add(new Pair { Prompt = Field(promptField), Response = Field(responseField) });
            }
            catch (JsonException e) { throw new InvalidDataException($"{path}:{line}: not valid JSON ({e.Message})."); }
            if (maxRows > 0 && rows.Count == maxRows) break;
        }
        if (rows.Count == 0) throw new InvalidDataException($"{path}: no examples (the file is empty or has only blank lines).");
        return ml.Data.LoadFromEnumerable(rows);
    }
}
