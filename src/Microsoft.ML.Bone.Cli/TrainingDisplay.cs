using Microsoft.ML.Bone.Training;
using Spectre.Console;

namespace Microsoft.ML.Bone.Cli;

/// <summary>
/// Progress for fine-tuning runs, and the loss curves they leave behind. On a terminal: one live bar per run. When the
/// output is redirected (CI logs, <c>nohup</c>, a pipe) Spectre's bars print nothing, so plain lines are written
/// instead: the first and last step, every 5% in between, and every validation.
/// </summary>
internal static class TrainingDisplay
{
    /// <summary>Whether live bars can be drawn: an interactive terminal that is not redirected.</summary>
    public static bool Interactive => !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive;

    /// <summary>Runs <paramref name="train"/> with one progress display fed by the reports it receives.</summary>
    public static T WithProgressBar<T>(Func<IProgress<TrainingProgress>, T> train)
    {
        T result = default!;
        WithProgressBars(["training"], reporters => result = train(reporters[0]));
        return result;
    }

    /// <summary>
    /// Runs <paramref name="body"/> with one named progress display per run (bars drawn together, so runs done one after
    /// the other read side by side); <paramref name="body"/> gets the reporters in the order of <paramref name="names"/>.
    /// </summary>
    public static void WithProgressBars(IReadOnlyList<string> names, Action<IReadOnlyList<IProgress<TrainingProgress>>> body)
    {
        if (!Interactive)
        {
            body([.. names.Select(name => new Reporter(report => PlainLine(name, report)))]);
            return;
        }
        int width = names.Max(n => n.Length);
        AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                var tasks = names.Select(n => context.AddTask(Markup.Escape(n.PadRight(width)) + " waiting", autoStart: false, maxValue: 1)).ToList();
                body([.. names.Select((name, i) => new Reporter(report =>
                {
                    ProgressTask task = tasks[i];
                    if (!task.IsStarted) task.StartTask();
                    task.MaxValue = Math.Max(1, report.TotalSteps);
                    task.Value = report.Step;
                    string what = report.ValidationMetric is { } m
                        ? $"step {report.Step} validation {m:F4}"
                        : $"epoch {report.Epoch} loss {report.Loss:F4} {report.TokensPerSecond:F0} tok/s";
                    task.Description = Markup.Escape($"{name.PadRight(width)} {what}");
                    if (report.Step >= report.TotalSteps && report.ValidationMetric is null) task.StopTask();
                }))]);
            });
    }

    private static void PlainLine(string name, TrainingProgress report)
    {
        int every = Math.Max(1, report.TotalSteps / 20);
        bool milestone = report.Step == 1 || report.Step == report.TotalSteps || report.Step % every == 0;
        if (report.ValidationMetric is { } metric)
            Console.WriteLine($"{name}: step {report.Step}/{report.TotalSteps} validation {metric:F4}");
        else if (milestone)
            Console.WriteLine($"{name}: step {report.Step}/{report.TotalSteps} ({100.0 * report.Step / Math.Max(1, report.TotalSteps):F0}%) "
                + $"epoch {report.Epoch} loss {report.Loss:F4} {report.TokensPerSecond:F0} tok/s, {report.Elapsed:mm\\:ss} elapsed, {report.Remaining:mm\\:ss} left");
    }

    /// <summary>Writes the training loss (and validation metric) per step as a PNG.</summary>
    public static void SaveLossCurve(IReadOnlyList<TrainingProgress> history, string path) =>
        SaveLossCurves([("training loss", history)], "Fine-tuning", path);

    /// <summary>
    /// One PNG with the training loss of each run (a moving average over a tenth of the steps, so curves with one noisy
    /// batch per step stay readable) and, where runs validated, their validation metric. Written atomically.
    /// </summary>
    public static void SaveLossCurves(IReadOnlyList<(string Name, IReadOnlyList<TrainingProgress> History)> runs, string title, string path)
    {
        var plot = new ScottPlot.Plot();
        bool any = false;
        foreach (var (name, history) in runs)
        {
            var steps = history.Where(h => h.ValidationMetric is null).ToList();
            if (steps.Count == 0) continue;
            any = true;
            double[] smoothed = MovingAverage([.. steps.Select(h => h.Loss)], Math.Max(1, steps.Count / 10));
            var loss = plot.Add.Scatter(steps.Select(h => (double)h.Step).ToArray(), smoothed);
            loss.LegendText = runs.Count == 1 ? name : $"{name}: training loss";
            loss.MarkerSize = 0;
            loss.LineWidth = 2;
            var validations = history.Where(h => h.ValidationMetric is not null).ToList();
            if (validations.Count > 0)
            {
                var metric = plot.Add.Scatter(validations.Select(h => (double)h.Step).ToArray(), validations.Select(h => h.ValidationMetric!.Value).ToArray());
                metric.LegendText = $"{name}: validation metric";
                metric.LinePattern = ScottPlot.LinePattern.Dashed;
                metric.Color = loss.Color;
            }
        }
        if (!any) return;
        plot.Title(title);
        plot.XLabel("optimizer step");
        plot.ShowLegend();
        byte[] png = plot.GetImageBytes(800, 500, ScottPlot.ImageFormat.Png);
        Microsoft.ML.Bone.IO.AtomicFile.Write(path, stream => stream.Write(png));
    }

    private static double[] MovingAverage(double[] values, int window)
    {
        var result = new double[values.Length];
        double sum = 0;
        for (int i = 0; i < values.Length; i++)
        {
            sum += values[i];
            if (i >= window) sum -= values[i - window];
            result[i] = sum / Math.Min(i + 1, window);
        }
        return result;
    }

    /// <summary>Reports synchronously, so the display and the run share one thread.</summary>
    private sealed class Reporter(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
