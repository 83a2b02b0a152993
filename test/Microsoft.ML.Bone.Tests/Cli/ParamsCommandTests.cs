namespace Microsoft.ML.Bone.Tests.Cli;

/// <summary>`bone params` reproduces the Bone paper's trainable-parameter counts from shapes alone.</summary>
[TestClass]
public sealed class ParamsCommandTests
{
    [TestMethod]
    // The paper: Bone b = 64 on every linear layer of each block; LoRA r = 36 on LLaMA2-7B, r = 32 on RWKV6 (equal budget).
    [DataRow("rwkv6-1.6b", "Bone", 64, "33,030,144 (33.0M)")]
    [DataRow("rwkv6-3b", "Bone", 64, "55,050,240 (55.1M)")]
    [DataRow("rwkv6-7b", "Bone", 64, "88,080,384 (88.1M)")]
    [DataRow("llama2-7b", "Bone", 64, "87,031,808 (87.0M)")]
    [DataRow("llama2-7b", "Lora", 36, "89,948,160 (89.9M)")]
    [DataRow("rwkv6-1.6b", "Lora", 32, "33,030,144 (33.0M)")]
    [DataRow("llama2-7b", "Bat", 64, "87,031,808 (87.0M)")]
    public void ReproducesThePapersCounts(string preset, string adapter, int rank, string expected)
    {
        var result = BoneCli.Run("params", "--preset", preset, "--adapter", adapter, "--rank", rank.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.AreEqual(0, result.ExitCode, result.StdErr);
        StringAssert.Contains(result.StdOut, $"trainable params: {expected}");
    }

    [TestMethod]
    public void ReadsOnlyTheHeadersOfARealCheckpoint()
    {
        // 12 blocks × 8 heads × 8 × 8 initial-state values; and Bone b = 32 on the eight projections (out: 7·64 + 224 per block).
        string model = SharedData.Path("models", "tiny-rwkv-6v0-1m", "tiny-rwkv-6v0-1m-FP32.bin");
        StringAssert.Contains(BoneCli.Run("params", "--model", model, "--adapter", "StateTuning").StdOut, "trainable params: 6,144");
        StringAssert.Contains(BoneCli.Run("params", "--model", model, "--adapter", "Bone", "--rank", "32").StdOut, $"trainable params: {12 * 32 * (7 * 64 + 224):N0}");
        BoneCli.AssertOneLineError(BoneCli.Run("params", "--preset", "gpt-5", "--adapter", "Bone"), "Unknown preset 'gpt-5'", "rwkv6-1.6b");
        BoneCli.AssertOneLineError(BoneCli.Run("params", "--adapter", "Bone"), "exactly one of --model and --preset");
    }
}
