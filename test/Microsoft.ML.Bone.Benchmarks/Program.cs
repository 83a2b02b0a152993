using Microsoft.ML.Bone.Benchmarks;

// Benchmarks are programs, not unit tests: they time whole operations in fresh processes and report peak memory.
//   realsize [--shape tinyllama|llama2-7b] [--dir DIR] [--keep]   load + one Bone training step of a real-size checkpoint
//   tiny [--baseline REV] [--repeats N]                          tiny-model commands, this tree against another revision
// (child commands, started by the two above: child-load DIR, child-step DIR SEQ CHECKPOINTING)
return args switch
{
    ["realsize", .. var rest] => RealSizeBenchmark.Run(rest),
    ["tiny", .. var rest] => TinyBeforeAfter.Run(rest),
    ["child-load", string dir] => RealSizeBenchmark.ChildLoad(dir),
    ["child-step", string dir, string seq, string checkpointing] => RealSizeBenchmark.ChildStep(dir, int.Parse(seq), bool.Parse(checkpointing)),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: realsize [--shape tinyllama|llama2-7b] [--dir DIR] [--keep] | tiny [--baseline REV] [--repeats N]");
    return 2;
}
