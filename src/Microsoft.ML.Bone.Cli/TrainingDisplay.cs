using Microsoft.ML.Bone.Training;
using Spectre.Console;

namespace Microsoft.ML.Bone.Cli;

/// <summary>A progress bar for fine-tuning runs and the loss curve they leave behind.</summary>
internal static class TrainingDisplay
{
    /// <summary>Runs <paramref name="train"/> under a progress bar fed by the progress reports it receives.</summary>
    public static T WithProgressBar<T>(Func<IProgress<TrainingProgress>, T> train)
    {
        T result = default!;
        AnsiConsole.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                ProgressTask task = context.AddTask("training", maxValue: 1);
                result = train(new Reporter(report =>
                {
                    task.MaxValue = report.TotalSteps;
                    task.Value = report.Step;
                    task.Description = report.ValidationMetric is { } m
                        ? $"step {report.Step} validation {m:F4}"
                        : $"epoch {report.Epoch} loss {report.Loss:F4} {report.TokensPerSecond:F0} tok/s";
                }));
            });
        return result;
    }

    /// <summary>Writes the training loss (and validation metric) per step as a PNG.</summary>
    public static void SaveLossCurve(IReadOnlyList<TrainingProgress> history, string path)
    {
        var steps = history.Where(h => h.ValidationMetric is null).ToList();
        if (steps.Count == 0) return;
        var plot = new ScottPlot.Plot();
        var loss = plot.Add.Scatter(steps.Select(h => (double)h.Step).ToArray(), steps.Select(h => h.Loss).ToArray());
        loss.LegendText = "training loss";
        loss.MarkerSize = 0;
        var validations = history.Where(h => h.ValidationMetric is not null).ToList();
        if (validations.Count > 0)
        {
            var metric = plot.Add.Scatter(validations.Select(h => (double)h.Step).ToArray(), validations.Select(h => h.ValidationMetric!.Value).ToArray());
            metric.LegendText = "validation metric";
        }
        plot.Title("Fine-tuning");
        plot.XLabel("optimizer step");
        plot.ShowLegend();
        plot.SavePng(path, 800, 500);
    }

    /// <summary>Reports synchronously, so the bar and the run share one thread.</summary>
    private sealed class Reporter(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
