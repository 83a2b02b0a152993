using System.Diagnostics;

namespace Microsoft.ML.Bone.Tests.Cli;

/// <summary>Runs the real <c>bone</c> executable (built next to the tests) as a separate process.</summary>
internal static class BoneCli
{
    public sealed record Result(int ExitCode, string StdOut, string StdErr);

    public static Result Run(params string[] args) => Run(TimeSpan.FromMinutes(2), args);

    public static Result Run(TimeSpan timeout, params string[] args)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "bone.dll"));
        foreach (string a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"bone {string.Join(' ', args)} did not finish in {timeout.TotalSeconds} s.");
        }
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>Asserts a failed run: exit code 1 and exactly one stderr line, containing each of <paramref name="expected"/>.</summary>
    public static void AssertOneLineError(Result result, params string[] expected)
    {
        Assert.AreEqual(1, result.ExitCode, $"exit code; stderr: {result.StdErr}");
        string[] lines = result.StdErr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.HasCount(1, lines, $"one line on stderr, got: {result.StdErr}");
        Assert.DoesNotContain("   at ", lines[0], "no stack trace");
        foreach (string e in expected) StringAssert.Contains(lines[0], e);
    }
}
