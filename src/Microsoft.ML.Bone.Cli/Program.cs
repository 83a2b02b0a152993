using System.CommandLine;
using Microsoft.ML.Bone.Cli;
using Microsoft.ML.Bone.Cli.Demo;

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
return root.Parse(args).Invoke();
