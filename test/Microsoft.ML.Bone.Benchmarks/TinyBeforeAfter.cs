using System.Diagnostics;
using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Models.Roberta;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Benchmarks;

/// <summary>
/// Tiny-model commands of the <c>bone</c> CLI, timed in this tree and in another revision (default: the one before
/// the model-layer rework), alternating runs so a shared machine slows both alike. The fixtures (a small LLaMA with
/// LLaMA-2's tokenizer, a small RoBERTa with roberta-base's, SST-2 and GSM8K rows) are written once by this tree in
/// the Hugging Face layout both revisions read.
/// </summary>
internal static class TinyBeforeAfter
{
    public static int Run(string[] args)
    {
        string baseline = Measured.Option(args, "--baseline") ?? "b211a62";
        int repeats = int.Parse(Measured.Option(args, "--repeats") ?? "3");
        string root = RepositoryRoot();
        string data = Path.GetFullPath(Path.Combine(root, "..", "shared", "data"));
        string work = Directory.CreateTempSubdirectory("bone-tiny-bench-").FullName;
        string baselineTree = Path.Combine(work, "baseline");
        try
        {
            Shell(root, "git", "worktree", "add", "--detach", baselineTree, baseline);
            string oldCli = BuildCli(baselineTree), newCli = BuildCli(root);
            var f = Fixtures(work, data);
            (string Name, string[] Args)[] cases =
            [
                // {out} is a folder of each revision's own: their model zips differ in format.
                ("classify train (RoBERTa h64, 400 SST-2 rows)", ["classify", "train", "--model", f.Roberta, "--train", f.Sst2, "--epochs", "1", "--batch-size", "16", "--max-length", "64", "--rank", "8", "--out", "{out}/c.zip"]),
                ("lm train (LLaMA h64, 64 GSM8K rows)", ["lm", "train", "--model", f.Llama, "--train", f.Gsm8k, "--epochs", "1", "--batch-size", "4", "--max-length", "128", "--rank", "8", "--max-new-tokens", "16", "--out", "{out}/l.zip"]),
                ("lm eval (8 rows, 16 new tokens each)", ["lm", "eval", "--model", "{out}/l.zip", "--data", f.Gsm8kTest]),
                ("logits (LLaMA, 64 ids)", ["logits", "--model", f.Llama, "--ids", string.Join(',', Enumerable.Range(1, 64)), "--out", "{out}/x.safetensors"]),
            ];
            Console.WriteLine($"| command | {baseline} (s) | this tree (s) | this / {baseline} |");
            Console.WriteLine("|---|---|---|---|");
            foreach (var (name, commandArgs) in cases)
            {
                var before = new List<double>();
                var after = new List<double>();
                string oldOut = Directory.CreateDirectory(Path.Combine(work, "out-baseline")).FullName, newOut = Directory.CreateDirectory(Path.Combine(work, "out-tree")).FullName;
                string[] With(string folder) => commandArgs.Select(a => a.Replace("{out}", folder, StringComparison.Ordinal)).ToArray();
                for (int r = 0; r < repeats; r++)
                {
                    before.Add(Time(oldCli, With(oldOut)));
                    after.Add(Time(newCli, With(newOut)));
                }
                double b = Median(before), a = Median(after);
                Console.WriteLine($"| {name} | {b:F2} | {a:F2} | {a / b:F2} |");
            }
        }
        finally
        {
            Shell(root, "git", "worktree", "remove", "--force", baselineTree);
            Directory.Delete(work, recursive: true);
        }
        return 0;
    }

    private static (string Roberta, string Llama, string Sst2, string Gsm8k, string Gsm8kTest) Fixtures(string work, string data)
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        string roberta = Path.Combine(work, "roberta"), llama = Path.Combine(work, "llama");
        new RobertaForSequenceClassification(new RobertaConfig
        {
            VocabSize = 50265, HiddenSize = 64, NumHiddenLayers = 2, NumAttentionHeads = 4, IntermediateSize = 128, MaxPositionEmbeddings = 130,
            TypeVocabSize = 1, LayerNormEps = 1e-5, PadTokenId = 1,
        }).SaveConfigAndWeights(roberta);
        foreach (string file in new[] { "vocab.json", "merges.txt" }) File.Copy(Path.Combine(data, "tokenizers", "roberta", file), Path.Combine(roberta, file));
        new LlamaForCausalLM(new LlamaConfig
        {
            VocabSize = 32000, HiddenSize = 64, IntermediateSize = 128, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, HeadDim = 16,
            MaxPositionEmbeddings = 256, RmsNormEps = 1e-5, RopeTheta = 10000, TieWordEmbeddings = true,
        }).SaveConfigAndWeights(llama);
        File.Copy(Path.Combine(data, "tokenizers", "llama2", "tokenizer.model"), Path.Combine(llama, "tokenizer.model"));
        string sst2 = Path.Combine(work, "sst2.tsv"), gsm8k = Path.Combine(work, "gsm8k.jsonl"), gsm8kTest = Path.Combine(work, "gsm8k-test.jsonl");
        File.WriteAllLines(sst2, File.ReadLines(Path.Combine(data, "glue", "sst2", "train.tsv")).Take(401));
        File.WriteAllLines(gsm8k, File.ReadLines(Path.Combine(data, "gsm8k", "train.jsonl")).Take(64));
        File.WriteAllLines(gsm8kTest, File.ReadLines(Path.Combine(data, "gsm8k", "test.jsonl")).Take(8));
        return (roberta, llama, sst2, gsm8k, gsm8kTest);
    }

    private static double Time(string cli, string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(cli);
        foreach (string a in args) start.ArgumentList.Add(a);
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd(), errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{cli} {string.Join(' ', args)} failed: {errors}{output}");
        return clock.Elapsed.TotalSeconds;
    }

    private static string BuildCli(string tree)
    {
        Shell(tree, "dotnet", "build", "src/Microsoft.ML.Bone.Cli", "-c", "Release", "--nologo", "-v", "q");
        return Path.Combine(tree, "src", "Microsoft.ML.Bone.Cli", "bin", "Release", "net10.0", "bone.dll");
    }

    private static void Shell(string directory, string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd(), errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{file} {string.Join(' ', args)} failed in {directory}: {errors}{output}");
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Microsoft.ML.Bone.sln"))) return dir.FullName;
        throw new InvalidOperationException("Run the benchmarks from the repository's build output (Microsoft.ML.Bone.sln not found above it).");
    }

    private static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);

}
