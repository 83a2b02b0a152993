using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Microsoft.ML.Bone.Cli.Bench;

/// <summary>One measured row: a case, our numbers and (when the peer ran) PyTorch's.</summary>
internal sealed record BenchRow(string Group, string Case, string Method, Dictionary<string, double> Ours, Dictionary<string, double>? Peer);

/// <summary>
/// Runs the benchmark cases, each in a fresh child process for ours and for the PyTorch peer, alternating, and writes
/// the markdown table (stdout and bench.md) and a chart (bench.png).
/// </summary>
internal static class BenchRunner
{
    private static Dictionary<string, string> Case(params (string Key, object Value)[] pairs) =>
        pairs.ToDictionary(p => p.Key, p => Convert.ToString(p.Value, CultureInfo.InvariantCulture)!);

    /// <summary>The cases: a quick set (seconds each; CI proves the suite works with it) or the full one.</summary>
    public static List<(string Group, string Name, Dictionary<string, string> Case)> Cases(bool quick)
    {
        var cases = new List<(string, string, Dictionary<string, string>)>();
        foreach (string dtype in new[] { "float32", "bfloat16" })
            cases.Add(("matmul", $"2048³ {dtype}", Case(("kind", "matmul"), ("dtype", dtype), ("n", 2048), ("steps", 5))));
        string[] layerMethods = ["base", "lora", "bone", "mini", "bat", "bat_ckpt"];
        (int In, int Out, int Tokens)[] shapes = quick ? [(1024, 1024, 256)] : [(1024, 1024, 256), (1024, 1024, 4096), (1024, 2816, 256), (1024, 2816, 4096), (4096, 4096, 256), (4096, 4096, 4096)];
        foreach (var (i, o, t) in shapes)
            foreach (string m in layerMethods)
                cases.Add(("linear", $"{i}×{o}, {t} tokens", Case(("kind", "linear"), ("method", m), ("in", i), ("out", o), ("tokens", t), ("r", 32), ("steps", quick ? 5 : 10))));

        void Train(string model, int batch, int seq, string[] methods, int steps)
        {
            foreach (string m in methods)
                cases.Add(("train", $"{model}, {batch}×{seq}", Case(("kind", "train"), ("model", model), ("method", m), ("batch", batch), ("seq", seq), ("r", 8), ("steps", steps))));
        }
        if (quick)
        {
            Train("llama-512", 2, 256, ["full", "lora", "bone", "bat", "bat_ckpt"], 2);
            Train("rwkv6-512", 1, 512, ["lora", "bone"], 2);
            Train("roberta-small", 8, 128, ["lora", "bone"], 2);
        }
        else
        {
            Train("llama-512", 2, 256, ["full", "lora", "pissa", "bone", "bat", "bat_ckpt"], 3);
            Train("tinyllama", 1, 256, ["lora", "bone", "bat_ckpt"], 2);
            Train("roberta-base", 8, 128, ["full", "lora", "bone", "bat", "bat_ckpt"], 3);
            Train("rwkv6-1024", 1, 512, ["lora", "bone", "bat_ckpt"], 3);
        }
        string lm = "llama-512";
        foreach (var (m, state) in new[] { ("base", "base"), ("bone", "merged"), ("bone", "unmerged"), ("lora", "unmerged") })
            cases.Add(("infer", $"{lm}, 1×256 forward", Case(("kind", "infer"), ("model", lm), ("method", m), ("state", state), ("seq", 256), ("r", 8), ("steps", quick ? 3 : 5))));
        cases.Add(("score", "roberta-small, 256 rows × 128 tokens, Transform", Case(("kind", "score"), ("model", "roberta-small"), ("method", "bone"), ("rows", 256), ("seq", 128), ("steps", 3))));
        foreach (int batch in new[] { 1, 4 })
        {
            cases.Add(("generate", $"{lm}, batch {batch}", Case(("kind", "generate"), ("model", lm), ("method", "base"), ("batch", batch), ("prompt", 32), ("tokens", quick ? 32 : 64), ("steps", 3))));
            cases.Add(("generate", $"rwkv6-512, batch {batch}", Case(("kind", "generate"), ("model", "rwkv6-512"), ("method", "base"), ("batch", batch), ("prompt", 32), ("tokens", quick ? 32 : 64), ("steps", 3))));
        }
        return cases;
    }

    /// <summary>Writes bench.md and bench.png again from a run's bench.json (no measuring).</summary>
    public static int Render(string directory, bool quick)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "bench.json")));
        var root = doc.RootElement;
        var matmul = root.GetProperty("matmul").Deserialize<Dictionary<string, double>>()!;
        var rows = root.GetProperty("rows").Deserialize<List<BenchRow>>()!;
        string table = Markdown(rows, matmul, root.GetProperty("threads").GetInt32(), rows.Any(r => r.Peer is not null) ? "/usr/bin/python3" : null, quick);
        File.WriteAllText(Path.Combine(directory, "bench.md"), table);
        Chart(rows, Path.Combine(directory, "bench.png"));
        Console.WriteLine(table);
        return 0;
    }

    public static int Run(bool quick, string outDirectory, string peerMode, int threads)
    {
        Directory.CreateDirectory(outDirectory);
        threads = Nn.TorchThreads.Resolve(threads);
        string? python = peerMode == "none" ? null : FindPeer();
        if (peerMode == "require" && python is null) throw new InvalidOperationException("--peer require: no python3 with torch found (install Debian's python3-torch, see build/bench.sh).");
        Console.Error.WriteLine($"{threads} threads; peer: {(python is null ? "none" : python)}");
        var rows = new List<BenchRow>();
        foreach (var (group, name, c) in Cases(quick))
        {
            c["threads"] = threads.ToString(CultureInfo.InvariantCulture);
            Dictionary<string, double> ours = Child(c);
            // The peer has no ML.NET: scoring through Transform is ours alone.
            Dictionary<string, double>? peer = python is null || c["kind"] == "score" ? null : Peer(python, c);
            rows.Add(new BenchRow(group, name, Label(c), ours, peer));
            Console.Error.WriteLine($"  {group} {name} {Label(c)}: {ours["seconds"] * 1000:F1} ms{(peer is null ? "" : $" / peer {peer["seconds"] * 1000:F1} ms")}");
        }
        var matmul = rows.Where(r => r.Group == "matmul").ToDictionary(r => r.Case.EndsWith("bfloat16", StringComparison.Ordinal) ? "bfloat16" : "float32", r => r.Ours["gflops"]);
        string table = Markdown(rows, matmul, threads, python, quick);
        Console.WriteLine(table);
        File.WriteAllText(Path.Combine(outDirectory, "bench.md"), table);
        Chart(rows, Path.Combine(outDirectory, "bench.png"));
        File.WriteAllText(Path.Combine(outDirectory, "bench.json"), JsonSerializer.Serialize(new { matmul, threads, rows }, new JsonSerializerOptions { WriteIndented = true }));
        return 0;
    }

    private static string Label(Dictionary<string, string> c) =>
        c["kind"] switch
        {
            "infer" => c["method"] == "base" ? "base" : $"{c["method"]} {c["state"]}",
            "matmul" => "GEMM",
            _ => c["method"],
        };

    private static string? FindPeer()
    {
        foreach (string candidate in new[] { "/usr/bin/python3", "python3" })
        {
            try
            {
                using var p = Process.Start(new ProcessStartInfo(candidate, ["-c", "import torch"]) { RedirectStandardError = true, RedirectStandardOutput = true })!;
                p.WaitForExit();
                if (p.ExitCode == 0) return candidate;
            }
            catch (System.ComponentModel.Win32Exception) { }
        }
        return null;
    }

    private static Dictionary<string, double> Child(Dictionary<string, string> c)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true };
        // Under `dotnet bone.dll` the child needs the entry assembly; under the apphost it does not.
        if (Path.GetFileName(Environment.ProcessPath!).StartsWith("dotnet", StringComparison.Ordinal)) start.ArgumentList.Add(typeof(BenchRunner).Assembly.Location);
        start.ArgumentList.Add("bench-case");
        start.ArgumentList.Add(JsonSerializer.Serialize(c));
        return RunJson(start, "bone bench-case");
    }

    private static Dictionary<string, double>? Peer(string python, Dictionary<string, string> c)
    {
        var start = new ProcessStartInfo(python) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Bench", "bench_peer.py"));
        start.ArgumentList.Add(JsonSerializer.Serialize(c));
        // Debian's torch 1.13 reads OMP_NUM_THREADS too; both sides run with the same count.
        start.Environment["OMP_NUM_THREADS"] = c["threads"];
        try { return RunJson(start, "bench_peer.py"); }
        catch (InvalidOperationException e)
        {
            Console.Error.WriteLine($"  peer failed: {e.Message.Split('\n')[0]}");
            return null;
        }
    }

    private static Dictionary<string, double> RunJson(ProcessStartInfo start, string what)
    {
        using var process = Process.Start(start)!;
        Task<string> errors = process.StandardError.ReadToEndAsync();
        string output = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"{what} failed ({process.ExitCode}): {errors.Result}{output}");
        string last = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last();
        using var doc = JsonDocument.Parse(last);
        return doc.RootElement.EnumerateObject().Where(p => p.Value.ValueKind == JsonValueKind.Number).ToDictionary(p => p.Name, p => p.Value.GetDouble());
    }

    private static string Markdown(List<BenchRow> rows, Dictionary<string, double> matmul, int threads, string? python, bool quick)
    {
        var md = new StringBuilder();
        md.AppendLine($"# bone bench{(quick ? " --quick" : "")} ({DateTime.UtcNow:yyyy-MM-dd})");
        md.AppendLine();
        md.AppendLine($"{Environment.ProcessorCount} logical cores, {threads} torch threads on both sides; libtorch {TorchSharp.torch.__version__} (MKL) here, peer: {(python is null ? "not run" : "PyTorch eager via " + python)}.");
        md.AppendLine($"Matrix-product rate measured in this run (2048³): fp32 {matmul["float32"]:F0} GFLOP/s, bf16 {matmul["bfloat16"]:F0} GFLOP/s.");
        md.AppendLine("MFU = model FLOPs / time / fp32 rate, with FLOPs = tokens × (4·P_linear + 2·P_weight-grads + attention 12·L·T·d) for a training step (P_linear: parameters of the matrix products; weight gradients for full fine-tuning and Bat's dL/dW') and 2·P_linear per token for inference.");
        md.AppendLine();
        md.AppendLine("| group | case | method | ms | tokens/s | MFU (GEMM: rate) | RSS above rest (MB) | PyTorch ms | PyTorch RSS above (MB) | ours / PyTorch time |");
        md.AppendLine("|---|---|---|---|---|---|---|---|---|---|");
        foreach (var r in rows)
        {
            string mfu = r.Group == "matmul" ? $"{r.Ours["gflops"]:F0} GFLOP/s{(r.Peer is null ? "" : $" (PyTorch {2.0 * 2048 * 2048 * 2048 / r.Peer["seconds"] / 1e9:F0})")}"
                : r.Ours.TryGetValue("gflops", out double g) && r.Group != "linear" ? $"{100 * g / matmul["float32"]:F0}%" : "";
            string peerMs = r.Peer is null ? "" : $"{r.Peer["seconds"] * 1000:F1}";
            string peerMb = r.Peer is null ? "" : $"{r.Peer["rss_above"] / 1e6:F0}";
            string ratio = r.Peer is null ? "" : $"{r.Ours["seconds"] / r.Peer["seconds"]:F2}";
            md.AppendLine($"| {r.Group} | {r.Case} | {r.Method} | {r.Ours["seconds"] * 1000:F1} | {r.Ours["tokens_per_s"]:F0} | {mfu} | {r.Ours["rss_above"] / 1e6:F0} | {peerMs} | {peerMb} | {ratio} |");
        }
        md.AppendLine();
        md.AppendLine("Ratios against the targets (tokens/s and memory from the rows above):");
        md.AppendLine();
        foreach (var group in rows.Where(r => r.Group == "train").GroupBy(r => r.Case))
        {
            BenchRow? lora = group.FirstOrDefault(r => r.Method == "lora"), bone = group.FirstOrDefault(r => r.Method == "bone"), batCkpt = group.FirstOrDefault(r => r.Method == "bat_ckpt");
            if (lora is null) continue;
            var parts = new List<string>();
            if (bone is not null) parts.Add($"Bone {bone.Ours["tokens_per_s"] / lora.Ours["tokens_per_s"]:F2}× LoRA's speed at {bone.Ours["rss_above"] / lora.Ours["rss_above"]:F2}× its memory");
            if (batCkpt is not null) parts.Add($"Bat+checkpointing {batCkpt.Ours["tokens_per_s"] / lora.Ours["tokens_per_s"]:F2}× LoRA's speed at {batCkpt.Ours["rss_above"] / lora.Ours["rss_above"]:F2}× its memory");
            md.AppendLine($"- {group.Key}: {string.Join("; ", parts)}.");
        }
        foreach (var model in rows.Where(r => r.Group == "generate").GroupBy(r => r.Case[..r.Case.IndexOf(',')]))
        {
            var one = model.FirstOrDefault(r => r.Case.EndsWith("batch 1", StringComparison.Ordinal));
            var four = model.FirstOrDefault(r => r.Case.EndsWith("batch 4", StringComparison.Ordinal));
            if (one is not null && four is not null)
                md.AppendLine($"- {model.Key} generation: batch 4 gives {four.Ours["tokens_per_s"] / one.Ours["tokens_per_s"]:F1}× batch 1's tokens/s{(four.Peer is null ? "" : $" ({four.Ours["tokens_per_s"] / four.Peer["tokens_per_s"]:F2}× PyTorch's)")}.");
        }
        var infer = rows.Where(r => r.Group == "infer").ToDictionary(r => r.Method);
        if (infer.TryGetValue("base", out var b))
        {
            if (infer.TryGetValue("bone merged", out var merged)) md.AppendLine($"- Inference: Bone merged {merged.Ours["seconds"] / b.Ours["seconds"]:F3}× the base model's time; unmerged {(infer.TryGetValue("bone unmerged", out var u) ? u.Ours["seconds"] / b.Ours["seconds"] : double.NaN):F3}×.");
        }
        return md.ToString();
    }

    private static void Chart(List<BenchRow> rows, string path)
    {
        var plot = new ScottPlot.Plot();
        var measured = rows.Where(r => r.Peer is not null).ToList();
        if (measured.Count == 0) measured = rows;
        var bars = measured.Select((r, i) => new ScottPlot.Bar { Position = i, Value = r.Peer is null ? r.Ours["seconds"] * 1000 : r.Ours["seconds"] / r.Peer["seconds"] }).ToList();
        plot.Add.Bars(bars);
        plot.Axes.Bottom.SetTicks(measured.Select((_, i) => (double)i).ToArray(), measured.Select(r => $"{r.Case}: {r.Method}").ToArray());
        plot.Axes.Bottom.TickLabelStyle.Rotation = 60;
        plot.Axes.Bottom.TickLabelStyle.Alignment = ScottPlot.Alignment.MiddleLeft;
        plot.Axes.Left.Label.Text = measured.Any(r => r.Peer is not null) ? "time, ours / PyTorch eager (lower is better)" : "ms";
        if (measured.Any(r => r.Peer is not null)) plot.Add.HorizontalLine(1.0);
        plot.Layout.Fixed(new ScottPlot.PixelPadding(70, 20, 230, 20));
        plot.SavePng(path, Math.Max(800, 22 * measured.Count + 120), 680);
    }
}
