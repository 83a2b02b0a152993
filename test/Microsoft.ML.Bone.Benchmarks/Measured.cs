using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace Microsoft.ML.Bone.Benchmarks;

/// <summary>What a child process reports: named seconds and byte counts, one JSON object on its last line.</summary>
internal sealed class Measured
{
    public Dictionary<string, double> Values { get; } = [];

    public double this[string name] => Values[name];

    /// <summary>This process's peak resident set (VmHWM) and current one (VmRSS), in bytes.</summary>
    public static (long Peak, long Current) Rss()
    {
        long Read(string key) => File.ReadLines("/proc/self/status").Where(l => l.StartsWith(key, StringComparison.Ordinal))
            .Select(l => long.Parse(l[key.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024).Single();
        return (Read("VmHWM:"), Read("VmRSS:"));
    }

    /// <summary>The value after <paramref name="name"/> on the command line, or null.</summary>
    public static string? Option(string[] args, string name)
    {
        int i = Array.IndexOf(args, name);
        return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
    }

    /// <summary>Writes the values as the report line.</summary>
    public int Report()
    {
        Console.WriteLine(JsonSerializer.Serialize(Values));
        return 0;
    }

    /// <summary>Runs this program with <paramref name="args"/> in a fresh process and reads its report.</summary>
    public static Measured InChild(params string[] args)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true };
        string entry = typeof(Measured).Assembly.Location;
        // Under `dotnet Microsoft.ML.Bone.Benchmarks.dll` the child needs the entry assembly; under the apphost it does not.
        if (Path.GetFileName(Environment.ProcessPath!).StartsWith("dotnet", StringComparison.Ordinal)) start.ArgumentList.Add(entry);
        foreach (string a in args) start.ArgumentList.Add(a);
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd(), errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"child {string.Join(' ', args)} failed ({process.ExitCode}): {errors}{output}");
        string last = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Last();
        var measured = new Measured();
        foreach (var (k, v) in JsonSerializer.Deserialize<Dictionary<string, double>>(last)!) measured.Values[k] = v;
        return measured;
    }
}
