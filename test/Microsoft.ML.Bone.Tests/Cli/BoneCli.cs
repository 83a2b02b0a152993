using System.Diagnostics;

namespace Microsoft.ML.Bone.Tests.Cli;

/// <summary>Runs the real <c>bone</c> executable (built next to the tests) as a separate process.</summary>
internal static class BoneCli
{
    public sealed record Result(int ExitCode, string StdOut, string StdErr);

    public static Result Run(params string[] args) => Run(TimeSpan.FromMinutes(2), args);

    public static Result Run(TimeSpan timeout, params string[] args) => Run(timeout, null, args);

    /// <summary>Runs to the end (failing the test after <paramref name="timeout"/>), with <paramref name="environment"/> added to the child's.</summary>
    public static Result Run(TimeSpan timeout, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        using var process = Process.Start(StartInfo(args, environment))!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"bone {string.Join(' ', args)} did not finish in {timeout.TotalSeconds} s.");
        }
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>
    /// Starts <paramref name="args"/>, waits (at most <paramref name="timeout"/>) until <paramref name="ready"/> (given the
    /// process id) is true, then SIGKILLs the process: no finally blocks, no exit handlers. Fails the test if it ended
    /// before. Returns its id.
    /// </summary>
    public static int KillWhen(Func<int, bool> ready, TimeSpan timeout, IReadOnlyDictionary<string, string>? environment, params string[] args)
    {
        using var process = Process.Start(StartInfo(args, environment))!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var clock = Stopwatch.StartNew();
        while (!ready(process.Id) && !process.HasExited && clock.Elapsed < timeout) Thread.Sleep(20);
        Assert.IsFalse(process.HasExited, $"bone {string.Join(' ', args)} ended (exit {(process.HasExited ? process.ExitCode : 0)}) before it was to be killed");
        Assert.IsTrue(ready(process.Id), $"bone {string.Join(' ', args)} did not reach the point to kill it in {timeout.TotalSeconds} s");
        process.Kill(entireProcessTree: true);
        process.WaitForExit();
        return process.Id;
    }

    private static ProcessStartInfo StartInfo(IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment)
    {
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "bone.dll"));
        foreach (string a in args) start.ArgumentList.Add(a);
        foreach (var (name, value) in environment ?? new Dictionary<string, string>()) start.Environment[name] = value;
        return start;
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
