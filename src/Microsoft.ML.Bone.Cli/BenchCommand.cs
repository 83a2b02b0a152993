using System.CommandLine;
using System.Text.Json;
using Microsoft.ML.Bone.Cli.Bench;

namespace Microsoft.ML.Bone.Cli;

// Microsoft.ML has a namespace named Command; here Command is System.CommandLine's type.
using Command = System.CommandLine.Command;

/// <summary>
/// <c>bone bench [--quick] [--out DIR] [--peer auto|none|require] [--threads N]</c>: adapted layers, training steps,
/// inference and generation, each against a PyTorch eager peer in the same run when one is installed; one markdown
/// table (stdout, bench.md) and a chart (bench.png).
/// </summary>
internal static class BenchCommand
{
    public static IEnumerable<Command> Create()
    {
        var quick = new Option<bool>("--quick") { Description = "A small set of cases (about a minute)." };
        var output = new Option<string>("--out") { Description = "Folder for bench.md, bench.png and bench.json.", DefaultValueFactory = _ => "bench" };
        var peer = new Option<string>("--peer") { Description = "auto (run PyTorch when python3 with torch is installed), none, or require.", DefaultValueFactory = _ => "auto" };
        peer.AcceptOnlyFromAmong("auto", "none", "require");
        var threads = new Option<int>("--threads") { Description = "Torch threads on both sides (0 = one per logical core)." };
        var render = new Option<bool>("--render") { Description = "Rewrite bench.md and bench.png in --out from its bench.json, without measuring." };
        var bench = new Command("bench", "Benchmark adapters, training steps, inference and generation (against PyTorch eager when available).") { quick, output, peer, threads, render };
        bench.SetAction(p => CommandErrors.Run("bench", () => p.GetValue(render)
            ? BenchRunner.Render(p.GetValue(output)!, p.GetValue(quick))
            : BenchRunner.Run(p.GetValue(quick), p.GetValue(output)!, p.GetValue(peer)!, p.GetValue(threads))));

        var json = new Argument<string>("case");
        var child = new Command("bench-case", "One benchmark case in this process (used by bench).") { json };
        child.Hidden = true;
        child.SetAction(p =>
        {
            var c = JsonSerializer.Deserialize<Dictionary<string, string>>(p.GetValue(json)!)!;
            Console.WriteLine(JsonSerializer.Serialize(BenchWorkloads.Run(c)));
            return 0;
        });
        return [bench, child];
    }
}
