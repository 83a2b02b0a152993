using Microsoft.ML.Runtime;

namespace Microsoft.ML.Bone.Cli;

/// <summary>Shows the trainers' messages a user must see (resuming, warnings) on the console; the rest stays in ML.NET's log.</summary>
internal static class CliLog
{
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
