using System.Diagnostics;

namespace Microsoft.ML.Bone.Cli.Demo;

/// <summary>
/// The highest resident set size seen while it is alive, sampled every 20 ms on a background thread, above the size at
/// the start. Sampling (not the OS's high-water mark) because that mark cannot be reset between two runs in one process.
/// </summary>
internal sealed class PeakMemory : IDisposable
{
    private readonly long _start;
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _sampler;
    private long _peak;

    public PeakMemory()
    {
        // Each run starts from a heap handed back to the OS: otherwise a second run reuses what the first one grew
        // and looks lighter than it is.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        TrimNativeHeap();
        _start = Current();
        _peak = _start;
        _sampler = new Thread(() =>
        {
            while (!_stop.Token.WaitHandle.WaitOne(20)) Interlocked.Exchange(ref _peak, Math.Max(Interlocked.Read(ref _peak), Current()));
        }) { IsBackground = true, Name = "peak-memory" };
        _sampler.Start();
    }

    /// <summary>Peak resident bytes above the start so far.</summary>
    public long PeakAboveStart => Math.Max(0, Math.Max(Interlocked.Read(ref _peak), Current()) - _start);

    public void Dispose()
    {
        _stop.Cancel();
        _sampler.Join();
        _stop.Dispose();
    }

    private static void TrimNativeHeap()
    {
        if (!OperatingSystem.IsLinux()) return;
        try { _ = malloc_trim(0); }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException) { }   // not glibc (musl)
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int malloc_trim(nuint pad);

    private static long Current()
    {
        using var process = Process.GetCurrentProcess();
        return process.WorkingSet64;
    }
}
