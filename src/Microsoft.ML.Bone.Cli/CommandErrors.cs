namespace Microsoft.ML.Bone.Cli;

/// <summary>Runs a command body and turns expected failures into one line on stderr and exit code 1.</summary>
internal static class CommandErrors
{
    public static int Run(string command, Func<int> body)
    {
        try
        {
            return body();
        }
        catch (Exception e) when (e is IOException or InvalidDataException or ArgumentException or UnauthorizedAccessException or NotSupportedException or InvalidOperationException)
        {
            Console.Error.WriteLine($"bone {command}: error: {OneLine(e.Message)}");
            return 1;
        }
        catch (Exception e) when (Environment.GetEnvironmentVariable("BONE_STACK_TRACES") != "1")
        {
            // Anything else is a defect, not a user mistake: still one line (BONE_STACK_TRACES=1 shows the trace).
            Console.Error.WriteLine($"bone {command}: internal error ({e.GetType().Name}): {OneLine(e.Message)}");
            return 70;
        }
    }

    private static string OneLine(string message) => message.ReplaceLineEndings(" ").Trim();
}
