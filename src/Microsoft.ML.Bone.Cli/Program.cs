using System.CommandLine;
using Microsoft.ML.Bone.Cli;
using Microsoft.ML.Bone.Cli.Demo;

// A killed run's scratch folder goes at the next start of any command, whether or not it needs scratch space.
Microsoft.ML.Bone.IO.TempPaths.RemoveStaleScratch();

var root = new RootCommand("bone: Bone / Bat / MiSS / LoRA adapters for Hugging Face checkpoints, in .NET.")
{
    MergeCommand.Create(),
    ConvertCommand.Create(),
    ParamsCommand.Create(),
    DemoCommand.Create(),
    LogitsCommand.Create(),
    ClassifyCommand.Create(),
    LmCommand.Create(),
};
foreach (var command in BenchCommand.Create()) root.Subcommands.Add(command);
ParseResult parsed = root.Parse(args);
if (parsed.Errors.Count > 0)
{
    // One line, as for every other error: what was wrong, and where the usage is.
    var names = new List<string>();
    for (var result = parsed.CommandResult; result is not null && result.Command != root; result = result.Parent as System.CommandLine.Parsing.CommandResult)
        names.Insert(0, result.Command.Name);
    string command = string.Join(' ', names);
    string help = command.Length == 0 ? "bone --help" : $"bone {command} --help";
    Console.Error.WriteLine($"bone{(command.Length == 0 ? "" : " " + command)}: error: {string.Join("; ", parsed.Errors.Select(e => e.Message.TrimEnd('.')))} (see `{help}`).");
    return 1;
}
return parsed.Invoke();
