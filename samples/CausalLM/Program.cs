// Instruction-tunes a LLaMA checkpoint on GSM8K with a Bone adapter inside ML.NET, generates answers, scores them the
// way GSM8K is scored (exact match of the final number), saves the model zip, reloads it and checks the completions.
//
//   dotnet run --project samples/CausalLM -c Release -- [LLAMA_DIR] [GSM8K_DIR]
//
// LLAMA_DIR: a Hugging Face LLaMA-2-style directory (config.json, safetensors, tokenizer.model). Without it the sample
//            builds a small random LLaMA with LLaMA-2's tokenizer, so it runs offline in under a minute; its answers are
//            gibberish, but every step is the real one.
// GSM8K_DIR: folder with train.jsonl and test.jsonl (default: ../shared/data/gsm8k).
using System.Text.Json;
using Microsoft.ML;
using Microsoft.ML.Bone;
using Microsoft.ML.Bone.Models.Llama;
using TorchSharp;
using static TorchSharp.torch;

string shared = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", "..", "..", "..", "shared", "data"));
string gsm8k = args.Length > 1 ? args[1] : Path.Combine(shared, "gsm8k");
if (!File.Exists(Path.Combine(gsm8k, "train.jsonl")))
{
    Console.Error.WriteLine($"GSM8K not found in {gsm8k}; pass the folder holding train.jsonl and test.jsonl as the second argument.");
    return 1;
}
string work = Directory.CreateTempSubdirectory("bone-causallm-").FullName;
string modelPath = args.Length > 0 ? args[0] : SmallLlama(work, Path.Combine(shared, "tokenizers", "llama2", "tokenizer.model"));
bool small = args.Length == 0;

var ml = new MLContext(seed: 1);
IDataView Load(string file, int rows) => ml.Data.LoadFromEnumerable(File.ReadLines(Path.Combine(gsm8k, file)).Take(rows).Select(line =>
{
    using var doc = JsonDocument.Parse(line);
    return new Problem { Prompt = doc.RootElement.GetProperty("question").GetString()!, Response = doc.RootElement.GetProperty("answer").GetString()! };
}).ToList());
IDataView train = Load("train.jsonl", small ? 400 : 7473), test = Load("test.jsonl", 8);

var trainer = ml.Bone.CausalLM(new BoneCausalLMOptions
{
    ModelPath = modelPath,
    Adapter = AdapterKind.Bone,
    Rank = small ? 8 : 64,
    LearningRate = small ? 1e-2 : 2e-5,
    MaxEpochs = 1,
    BatchSize = 8,
    MaxSequenceLength = small ? 160 : 512,
    MaxNewTokens = small ? 24 : 256,
    StopStrings = ["\n\n"],
    Progress = new Progress<Microsoft.ML.Bone.Training.TrainingProgress>(p => { if (p.Step % 10 == 0) Console.WriteLine($"  {p}"); }),
});
Console.WriteLine($"Instruction-tuning {modelPath} with Bone on GSM8K…");
BoneCausalLMTransformer model = trainer.Fit(train);
Console.WriteLine(model.ParameterSummary);

IDataView scored = model.Transform(test);
Console.WriteLine($"GSM8K test: {ml.Bone.EvaluateCausalLM(scored)}");
string[] completions = ml.Data.CreateEnumerable<Completed>(scored, false).Select(c => c.Completion).ToArray();

string zip = Path.Combine(work, "gsm8k.zip");
ml.Model.Save(model, test.Schema, zip);
var reloaded = (BoneCausalLMTransformer)new MLContext().Bone.LoadModel(zip, out _);
bool same = reloaded.Complete(ml.Data.CreateEnumerable<Problem>(test, false).Select(p => p.Prompt).ToArray()).SequenceEqual(completions);
Console.WriteLine($"saved {zip}; completions after reload {(same ? "identical" : "DIFFERENT")}");
Console.WriteLine($"first completion: {completions[0]}");
return same ? 0 : 1;

static string SmallLlama(string work, string tokenizer)
{
    if (!File.Exists(tokenizer)) throw new FileNotFoundException($"No model given and LLaMA-2's tokenizer.model is not at {tokenizer}; pass a LLaMA directory as the first argument.");
    var config = new LlamaConfig
    {
        VocabSize = 32000, HiddenSize = 32, IntermediateSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, HeadDim = 8,
        MaxPositionEmbeddings = 256, RmsNormEps = 1e-5, TieWordEmbeddings = true,
    };
    var model = new LlamaForCausalLM(config);
    var generator = new Generator(11);
    using (no_grad())
        foreach (var (_, p) in model.named_parameters())
            if (p.ndim == 2) p.copy_(randn(p.shape, generator: generator) * 0.1);
    string directory = Path.Combine(work, "small-llama");
    model.SaveConfigAndWeights(directory);
    File.Copy(tokenizer, Path.Combine(directory, "tokenizer.model"));
    Console.WriteLine($"No model given: using a small random LLaMA with LLaMA-2's tokenizer ({directory}).");
    return directory;
}

/// <summary>A GSM8K problem.</summary>
internal sealed class Problem
{
    public string Prompt { get; set; } = "";
    public string Response { get; set; } = "";
}

/// <summary>The generated answer.</summary>
internal sealed class Completed
{
    public string Completion { get; set; } = "";
}
