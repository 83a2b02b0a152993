using System.Diagnostics;

namespace Microsoft.ML.Bone.IO;

/// <summary>
/// How reliability tests stop a real process at the worst moment of a save. With <c>BONE_FAULT_HOLD_WRITES</c> set
/// to a folder, each save, once its temporary file or folder is complete and before it is renamed into place,
/// creates a file named after the process id in that folder and waits to be killed (at most ten minutes);
/// <c>BONE_FAULT_HOLD_SKIP</c> = N lets the first N saves through. Unset (always, outside those tests), it does nothing.
/// </summary>
internal static class FaultInjection
{
    private static readonly string? HoldFolder = Environment.GetEnvironmentVariable("BONE_FAULT_HOLD_WRITES") is { Length: > 0 } f ? f : null;
    private static int _skip = int.TryParse(Environment.GetEnvironmentVariable("BONE_FAULT_HOLD_SKIP"), out int n) ? n : 0;

    /// <summary>Called with the complete temporary path just before it replaces <paramref name="destination"/>.</summary>
    public static void BeforeCommit(string temp, string destination)
    {
        if (HoldFolder is null || Interlocked.Decrement(ref _skip) >= 0) return;
        // Written whole, then renamed: the test reads the marker as soon as it appears.
        string marker = Path.Combine(HoldFolder, Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
        File.WriteAllText(marker + ".part", $"{temp}\n{destination}\n");
        File.Move(marker + ".part", marker);
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromMinutes(10)) Thread.Sleep(100);
    }
}
