using System.CommandLine;

namespace Microsoft.ML.Bone.Cli;

/// <summary>The training commands' checkpoint flags, mapped onto <see cref="FineTuningOptions"/>.</summary>
internal sealed class CheckpointFlags
{
    private readonly Option<string?> _directory = new("--checkpoint-dir") { Description = "Folder for training checkpoints (written atomically; none by default)." };
    private readonly Option<int> _every = new("--checkpoint-every") { Description = "Optimizer steps between checkpoints.", DefaultValueFactory = _ => 100 };
    private readonly Option<int> _keep = new("--keep-checkpoints") { Description = "Newest checkpoints kept.", DefaultValueFactory = _ => 2 };
    private readonly Option<bool> _resume = new("--resume") { Description = "Continue from the newest valid checkpoint in --checkpoint-dir." };

    public IEnumerable<Option> All => [_directory, _every, _keep, _resume];

    public void Apply(ParseResult parse, FineTuningOptions options)
    {
        options.CheckpointDirectory = parse.GetValue(_directory);
        options.CheckpointEverySteps = parse.GetValue(_every);
        options.KeepCheckpoints = parse.GetValue(_keep);
        options.Resume = parse.GetValue(_resume);
    }
}
