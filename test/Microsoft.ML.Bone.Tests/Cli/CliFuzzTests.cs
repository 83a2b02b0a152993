using Microsoft.ML.Bone.Tests.Reliability;

namespace Microsoft.ML.Bone.Tests.Cli;

/// <summary>
/// A smaller seeded set of the fuzzer's mutations through real <c>bone</c> processes: a mutated model zip, base
/// config.json, weights file or adapter_config.json ends in success or in exit code 1 with one line on stderr, never
/// a stack trace, an internal error (70), a crash or a hang.
/// </summary>
[TestClass]
public sealed class CliFuzzTests
{
    private static readonly int Seed = int.TryParse(Environment.GetEnvironmentVariable("BONE_FUZZ_SEED"), out int s) ? s : 20261201;

    [TestMethod]
    [Timeout(900_000)]
    public void MutatedInputsThroughTheCliEndInSuccessOrOneLineErrors()
    {
        string dir = Directory.CreateTempSubdirectory("bone-cli-fuzz-").FullName;
        try
        {
            string zip = FuzzModelZip.Create(dir);
            string baseModel = Path.Combine(dir, "base");
            string adapter = Path.Combine(dir, "adapter");
            using (var loaded = (BoneCausalLMTransformer)new MLContext().Bone.LoadModel(zip, out _)) loaded.ExportPeftAdapter(adapter);

            var random = new Random(Seed);
            var failures = new List<string>();
            int cases = 0;
            void Case(string what, string[] args)
            {
                cases++;
                var result = BoneCli.Run(TimeSpan.FromSeconds(90), args);
                Console.WriteLine($"{what}: exit {result.ExitCode} {result.StdErr.Split('\n')[0]}");
                string[] lines = result.StdErr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
                if (result.ExitCode is not (0 or 1)) failures.Add($"{what}: exit code {result.ExitCode}: {result.StdErr}");
                else if (result.ExitCode == 1 && (lines.Length != 1 || lines[0].Contains("   at ", StringComparison.Ordinal)))
                    failures.Add($"{what}: not one line on stderr: {result.StdErr}");
            }

            // Each case mutates a fresh copy of one input, as the in-process fuzzer does.
            string Copy(string source, string name)
            {
                string target = Path.Combine(dir, $"case{cases}-{name}");
                if (Directory.Exists(source))
                {
                    Directory.CreateDirectory(target);
                    foreach (string file in Directory.GetFiles(source)) File.Copy(file, Path.Combine(target, Path.GetFileName(file)));
                }
                else File.Copy(source, target);
                return target;
            }

            byte[] stored = FuzzModelZip.Stored(File.ReadAllBytes(zip));
            for (int i = 0; i < 12; i++)
            {
                string mutated = Path.Combine(dir, $"case{cases}-model.zip");
                File.WriteAllBytes(mutated, MutationFuzzTests.MutateBinary(stored, stored.Length, random));
                Case($"lm generate, zip case {i}", ["lm", "generate", "--model", mutated, "--prompt", "q1"]);
            }
            for (int i = 0; i < 8; i++)
            {
                string model = Copy(baseModel, "base");
                string config = Path.Combine(model, "config.json");
                File.WriteAllBytes(config, MutationFuzzTests.MutateJson(File.ReadAllBytes(config), random));
                Case($"logits, config.json case {i}", ["logits", "--model", model, "--ids", "1,2,3", "--out", Path.Combine(model, "logits.safetensors")]);
            }
            for (int i = 0; i < 6; i++)
            {
                string model = Copy(baseModel, "base");
                string weights = Path.Combine(model, "model.safetensors");
                File.WriteAllBytes(weights, MutationFuzzTests.MutateBinary(File.ReadAllBytes(weights), 256, random));
                Case($"logits, model.safetensors case {i}", ["logits", "--model", model, "--ids", "1,2,3", "--out", Path.Combine(model, "logits.safetensors")]);
            }
            for (int i = 0; i < 8; i++)
            {
                string mutatedAdapter = Copy(adapter, "adapter");
                string config = Path.Combine(mutatedAdapter, "adapter_config.json");
                File.WriteAllBytes(config, MutationFuzzTests.MutateJson(File.ReadAllBytes(config), random));
                Case($"merge, adapter_config.json case {i}", ["merge", "--model", baseModel, "--adapter", mutatedAdapter, "--out", Path.Combine(dir, $"merged{cases}")]);
            }
            Console.WriteLine($"{cases} mutated inputs through bone processes");
            Assert.IsEmpty(failures, string.Join("\n", failures));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
