using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Tests.CausalLM;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.Cli;

[TestClass]
public sealed class LmCommandTests
{
    [TestMethod]
    [Timeout(600_000)]
    public void TrainEvalGenerateOnGsm8kAndLogits()
    {
        string dir = Directory.CreateTempSubdirectory("bone-lm-").FullName;
        try
        {
            string model = Gsm8kPipelineTests.TinyLlama2(Path.Combine(dir, "tiny"));
            string zip = Path.Combine(dir, "gsm8k.zip"), train = SharedData.Path("gsm8k", "train.jsonl"), test = SharedData.Path("gsm8k", "test.jsonl");

            var trained = BoneCli.Run("lm", "train", "--model", model, "--train", train, "--max-rows", "32", "--batch-size", "8", "--max-length", "96", "--rank", "8", "--max-new-tokens", "8", "--out", zip);
            Assert.AreEqual(0, trained.ExitCode, trained.StdErr);
            StringAssert.Contains(trained.StdOut, "trainable params");
            Assert.IsTrue(File.Exists(Path.ChangeExtension(zip, ".loss.png")));

            var evaluated = BoneCli.Run("lm", "eval", "--model", zip, "--data", test, "--max-rows", "4");
            Assert.AreEqual(0, evaluated.ExitCode, evaluated.StdErr);
            StringAssert.Contains(evaluated.StdOut, "n = 4, loss");
            StringAssert.Contains(evaluated.StdOut, "answer accuracy");

            var generated = BoneCli.Run("lm", "generate", "--model", zip, "--prompt", "What is 2 + 3?");
            Assert.AreEqual(0, generated.ExitCode, generated.StdErr);

            BoneCli.AssertOneLineError(BoneCli.Run("lm", "eval", "--model", zip, "--data", test, "--prompt-field", "nope", "--max-rows", "2"), "no string field 'nope'");

            // bone logits on a causal LM: [seq_len, vocab].
            string logits = Path.Combine(dir, "logits.safetensors");
            var result = BoneCli.Run("logits", "--model", model, "--ids", "1,15043,3186", "--out", logits);
            Assert.AreEqual(0, result.ExitCode, result.StdErr);
            using var scope = NewDisposeScope();
            using var file = SafetensorsFile.Open(logits);
            CollectionAssert.AreEqual(new long[] { 3, 32000 }, file["logits"].Shape);
            var reference = LlamaForCausalLM.FromPretrained(model);
            using var noGrad = no_grad();
            Tensor expected = reference.call(tensor(new long[] { 1, 15043, 3186 }).unsqueeze(0))[0];
            Assert.IsTrue((expected - file.Load("logits")).abs().max().item<float>() < 1e-4);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
