using Microsoft.ML.Runtime;

namespace Microsoft.ML.Bone.Cli;

/// <summary>Shows the trainers' messages a user must see (resuming, warnings) on the console; the rest stays in ML.NET's log.</summary>
internal static class CliLog
{
    /// <summary>
    /// A command's MLContext: seed 1, the trainers' messages on the console, and ML.NET's scratch files in this process's
    /// temporary folder, which the next run removes if this one is killed.
    /// </summary>
    public static MLContext NewContext() => Attach(new MLContext(seed: 1) { TempFilePath = Microsoft.ML.Bone.IO.TempPaths.ProcessDirectory });

    public static MLContext Attach(MLContext ml)
    {
        ml.Log += (_, e) =>
        {
            if (e.Kind is ChannelMessageKind.Info or ChannelMessageKind.Warning && e.Source.StartsWith("Bone", StringComparison.Ordinal)
                && (e.RawMessage.StartsWith("resumed from", StringComparison.Ordinal) || e.RawMessage.StartsWith("warning:", StringComparison.Ordinal)))
                Console.WriteLine(e.RawMessage);
        };
        return ml;
    }
}
