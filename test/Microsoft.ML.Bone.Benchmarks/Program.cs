using Microsoft.ML.Bone.Benchmarks;

// Benchmarks are programs, not unit tests: they time whole operations in fresh processes and report peak memory.
//   realsize [--shape tinyllama|llama2-7b] [--dir DIR] [--keep]   load + one Bone training step of a real-size checkpoint
//   tiny [--baseline REV] [--repeats N]                          tiny-model commands, this tree against another revision
//   wkv [--shape 1.6b|3b|7b|tiny] [--seq 512] [--batch 1]        RWKV-6's WKV operator against its block's matmuls
// (child commands, started by the two above: child-load DIR, child-step DIR SEQ CHECKPOINTING)
return args switch
{
    ["realsize", .. var rest] => RealSizeBenchmark.Run(rest),
    ["tiny", .. var rest] => TinyBeforeAfter.Run(rest),
    ["wkv", .. var rest] => WkvBenchmark.Run(rest),
    ["child-load", string dir] => RealSizeBenchmark.ChildLoad(dir),
    ["child-step", string dir, string seq, string checkpointing] => RealSizeBenchmark.ChildStep(dir, int.Parse(seq), bool.Parse(checkpointing)),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: realsize [--shape tinyllama|llama2-7b] [--dir DIR] [--keep] | tiny [--baseline REV] [--repeats N] | wkv [--shape 1.6b|3b|7b|tiny] [--seq 512] [--batch 1]");
    return 2;
}
