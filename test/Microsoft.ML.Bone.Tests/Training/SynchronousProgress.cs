namespace Microsoft.ML.Bone.Tests.Training;

/// <summary>
/// Records reports on the reporting thread. <see cref="Progress{T}"/> posts each report to the thread pool,
/// so some can still be in flight when Fit returns; counting them would race.
/// </summary>
internal sealed class SynchronousProgress<T> : IProgress<T>
{
    private readonly List<T> _reports = [];

    public IReadOnlyList<T> Reports { get { lock (_reports) return [.. _reports]; } }

    public void Report(T value) { lock (_reports) _reports.Add(value); }
}
