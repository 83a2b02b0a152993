using Microsoft.ML.Runtime;

namespace Microsoft.ML.Bone.Data;

/// <summary>Warnings a model gives while it is used (not only while it trains), sent to the MLContext's log.</summary>
internal static class HostWarnings
{
    /// <summary>A sink writing "warning: …" messages from <paramref name="source"/> to <paramref name="env"/>'s log.</summary>
    public static Action<string> To(IHostEnvironment env, string source)
    {
        IHost host = env.Register(source);
        return message =>
        {
            using IChannel channel = host.Start("Use");
            channel.Warning(MessageSensitivity.None, "warning: " + message);
        };
    }
}
