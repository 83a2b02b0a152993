using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Models;
using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Models.Rwkv6;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.Reliability;

/// <summary>
/// A seeded, bounded mutation fuzzer over the file formats the project reads. Every mutated file must end in a
/// correct result or one of the project's documented error types (InvalidDataException, IOException and its
/// subclasses, ArgumentException, NotSupportedException), never another exception, a hang, or a managed allocation far
/// beyond what the file justifies. Mutations: bit flips, interesting bytes, insertions, deletions and truncations
/// (in the header region of binary formats, where sizes and offsets live), and number / token swaps in JSON.
/// </summary>
[TestClass]
[DoNotParallelize]
public sealed class MutationFuzzTests
{
    // BONE_FUZZ_SEED explores other mutations; CI runs the fixed one.
    private static readonly int Seed = int.TryParse(Environment.GetEnvironmentVariable("BONE_FUZZ_SEED"), out int s) ? s : 20261201;
    private static readonly TimeSpan PerCase = TimeSpan.FromSeconds(20);

    // About 12,000 cases in CI (a few seconds per thousand); BONE_FUZZ_SCALE multiplies them for longer hunts.
    private static readonly int CaseScale = 4 * (int.TryParse(Environment.GetEnvironmentVariable("BONE_FUZZ_SCALE"), out int k) && k > 0 ? k : 1);

    private sealed record Target(string Name, string FileName, byte[] Original, Action<string> Parse, int HeaderBytes, bool Json, int Cases);

    private static string _dir = "";

    [ClassInitialize]
    public static void CreateFolder(TestContext _) => _dir = Directory.CreateTempSubdirectory("bone-fuzz-").FullName;

    [ClassCleanup]
    public static void RemoveFolder() => Directory.Delete(_dir, recursive: true);

    private static bool IsProjectError(Exception e) =>
        e is InvalidDataException or IOException or ArgumentException or NotSupportedException;

    [TestMethod]
    [Timeout(600_000)]
    public void EveryMutatedFileEndsInAResultOrTheProjectsOwnError()
    {
        var failures = new List<string>();
        int total = 0;
        var clock = Stopwatch.StartNew();
        foreach (Target target in Targets())
        {
            // A stable seed per target (string.GetHashCode differs between processes).
            var random = new Random(target.Name.Aggregate(Seed, (h, c) => unchecked(h * 31 + c)));
            string folder = Path.Combine(_dir, target.Name);
            string path = Path.Combine(folder, target.FileName);
            for (int i = 0; i < target.Cases * CaseScale; i++)
            {
                byte[] mutated = target.Json ? MutateJson(target.Original, random) : MutateBinary(target.Original, target.HeaderBytes, random);
                File.WriteAllBytes(path, mutated);
                total++;
                string? problem = RunOne(target, path, mutated.Length);
                if (problem is not null && failures.Count < 40) failures.Add($"{target.Name} case {i} ({mutated.Length} bytes): {problem}");
            }
            File.WriteAllBytes(path, target.Original);
        }
        Console.WriteLine($"{total} mutated files in {clock.Elapsed.TotalSeconds:F0} s");
        Assert.IsEmpty(failures, string.Join("\n", failures));
    }

    private static string? RunOne(Target target, string path, long size)
    {
        long before = GC.GetTotalAllocatedBytes();
        Exception? error = null;
        var worker = new Thread(() =>
        {
            try
            {
                using var scope = NewDisposeScope();
                target.Parse(path);
            }
            catch (Exception e) { error = e; }
        }, 64 << 20) { IsBackground = true };
        worker.Start();
        if (!worker.Join(PerCase)) return $"no answer in {PerCase.TotalSeconds} s (a hang?)";
        long allocated = GC.GetTotalAllocatedBytes() - before;
        if (allocated > 256L * 1024 * 1024 + 64 * size) return $"allocated {allocated / 1048576} MB for a {size}-byte file";
        if (error is not null && !IsProjectError(error))
        {
            Exception inner = error;
            while (inner.InnerException is not null) inner = inner.InnerException;
            string where = inner.StackTrace?.Split('\n').FirstOrDefault(l => l.Contains(" at "))?.Trim() ?? "";
            return $"{error.GetType().Name} ({inner.GetType().Name}: {inner.Message.Split('\n')[0]} {where})";
        }
        return null;
    }

    private static IEnumerable<Target> Targets()
    {
        // safetensors: two tensors written by the project's writer.
        string st = Path.Combine(_dir, "safetensors");
        Directory.CreateDirectory(st);
        using (var scope = NewDisposeScope())
            SafetensorsWriter.Write(Path.Combine(st, "model.safetensors"), new Dictionary<string, Tensor> { ["a.weight"] = randn(4, 3), ["b.bias"] = arange(5, dtype: ScalarType.Int64) });
        yield return new Target("safetensors", "model.safetensors", File.ReadAllBytes(Path.Combine(st, "model.safetensors")), p =>
        {
            using var file = SafetensorsFile.Open(p);
            foreach (var e in file.Entries) file.Load(e.Name).Dispose();
        }, 256, Json: false, Cases: 600);

        // A sharded checkpoint's index (two shards of the project's writer, the index naming where each tensor is).
        {
            string sharded = Path.Combine(_dir, "index");
            Directory.CreateDirectory(sharded);
            using (var scope = NewDisposeScope())
            {
                SafetensorsWriter.Write(Path.Combine(sharded, "model-00001-of-00002.safetensors"), new Dictionary<string, Tensor> { ["a.weight"] = randn(4, 3), ["b.weight"] = randn(2) });
                SafetensorsWriter.Write(Path.Combine(sharded, "model-00002-of-00002.safetensors"), new Dictionary<string, Tensor> { ["c.weight"] = randn(3, 3) });
            }
            SafetensorsCheckpoint.WriteIndex(Path.Combine(sharded, SafetensorsCheckpoint.IndexFileName), new Dictionary<string, string>
            {
                ["a.weight"] = "model-00001-of-00002.safetensors", ["b.weight"] = "model-00001-of-00002.safetensors", ["c.weight"] = "model-00002-of-00002.safetensors",
            }, 4 * (12 + 2 + 9));
            yield return new Target("index", SafetensorsCheckpoint.IndexFileName, File.ReadAllBytes(Path.Combine(sharded, SafetensorsCheckpoint.IndexFileName)), p =>
            {
                using var checkpoint = SafetensorsCheckpoint.Open(Path.GetDirectoryName(p)!);
                foreach (string name in checkpoint.Names) checkpoint.Load(name).Dispose();
            }, 0, Json: true, Cases: 200);
        }

        // A model zip (a Bone adapter on a tiny LLaMA with a byte tokenizer), repacked with stored entries so that
        // mutations reach the settings record, the entry names and the tensors, not only the deflate streams; and
        // the zip as ML.NET wrote it. Each loads through mlContext.Bone.LoadModel and generates a token.
        {
            string zips = Path.Combine(_dir, "zip");
            string deflated = FuzzModelZip.Create(zips);
            Directory.CreateDirectory(Path.Combine(_dir, "zip-stored"));
            byte[] stored = FuzzModelZip.Stored(File.ReadAllBytes(deflated));
            yield return new Target("zip-stored", "model.zip", stored, FuzzModelZip.LoadAndGenerate, stored.Length, Json: false, Cases: 250);
            Directory.CreateDirectory(Path.Combine(_dir, "zip-deflated"));
            byte[] original = File.ReadAllBytes(deflated);
            yield return new Target("zip-deflated", "model.zip", original, FuzzModelZip.LoadAndGenerate, 4096, Json: false, Cases: 150);
        }

        // config.json of each architecture, read with its checkpoint's shapes on the meta device.
        foreach (var (name, directory) in ConfigSeeds())
        {
            string folder = Path.Combine(_dir, name);
            Directory.CreateDirectory(folder);
            foreach (string file in Directory.GetFiles(directory)) File.Copy(file, Path.Combine(folder, Path.GetFileName(file)), overwrite: true);
            // Causal LMs are built from shapes alone (meta device); the tiny RoBERTa is small enough to load.
            bool shapes = name != "config-roberta";
            yield return new Target(name, "config.json", File.ReadAllBytes(Path.Combine(directory, "config.json")), p =>
            {
                using var model = shapes ? ModelRegistry.LoadShapes(Path.GetDirectoryName(p)!) : ModelRegistry.Load(Path.GetDirectoryName(p)!);
            }, 0, Json: true, Cases: 250);
        }

        // adapter_config.json for Bone, Bat, MiSS-mini and LoRA.
        string[] adapters =
        [
            """{"peft_type": "MISS", "r": 8, "init_weights": true, "target_modules": ["q_proj", "v_proj"], "miss_dropout": 0.0, "mini_r": 1, "task_type": "CAUSAL_LM"}""",
            """{"peft_type": "MISS", "r": 4, "init_weights": "bat", "target_modules": ["up_proj"], "modules_to_save": ["score"]}""",
            """{"peft_type": "BONE", "r": 16, "init_weights": true, "target_modules": ["q_proj"], "bone_dropout": 0.0}""",
            """{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "use_rslora": false, "target_modules": ["q_proj", "v_proj"], "lora_dropout": 0.05, "init_lora_weights": "pissa"}""",
        ];
        for (int i = 0; i < adapters.Length; i++)
        {
            Directory.CreateDirectory(Path.Combine(_dir, $"adapter{i}"));
            yield return new Target($"adapter{i}", "adapter_config.json", Encoding.UTF8.GetBytes(adapters[i]),
                p => Microsoft.ML.Bone.Adapters.PeftAdapterConfig.Parse(File.ReadAllText(p), p), 0, Json: true, Cases: 150);
        }

        // Checkpoints of whole models: llama2.c, rwkv.cpp and BlinkDL .pth (the header regions hold every size).
        {
            string stories = SharedData.Path("models", "stories260K", "stories260K.bin");
            Directory.CreateDirectory(Path.Combine(_dir, "llama2c"));
            yield return new Target("llama2c", "model.bin", File.ReadAllBytes(stories), p => Llama2cCheckpoint.Load(p).Dispose(), 28, Json: false, Cases: 150);
        }
        {
            string rwkv = SharedData.Path("models", "tiny-rwkv-6v0-1m", "tiny-rwkv-6v0-1m-FP32.bin");
            Directory.CreateDirectory(Path.Combine(_dir, "rwkvcpp"));
            yield return new Target("rwkvcpp", "model.bin", File.ReadAllBytes(rwkv), p => Rwkv6Checkpoint.Load(p).Dispose(), 512, Json: false, Cases: 150);
        }
        string pth = Path.Combine(SharedData.RepositoryRoot, "test", "Microsoft.ML.Bone.Tests", "Models", "Rwkv6Fixtures", "tiny-rwkv-6v0-1m-bf16.pth");
        if (File.Exists(pth))
        {
            Directory.CreateDirectory(Path.Combine(_dir, "pth"));
            byte[] bytes = File.ReadAllBytes(pth);
            // The pickle and the zip's central directory: the first entry and the last 4 KiB.
            yield return new Target("pth", "model.pth", bytes, p => Rwkv6Checkpoint.Load(p).Dispose(), 4096, Json: false, Cases: 200);
        }

        // Tokenizer files.
        Directory.CreateDirectory(Path.Combine(_dir, "bytetok"));
        yield return new Target("bytetok", "byte_tokenizer.json", Encoding.UTF8.GetBytes(new Microsoft.ML.Bone.Tokenization.ByteTokenizer(Microsoft.ML.Bone.Tokenization.ByteTokenizerEncoding.Utf16LE, eosId: 10, padId: 0).ToJson()),
            p => Microsoft.ML.Bone.Tokenization.ByteTokenizer.Load(p), 0, Json: true, Cases: 150);
        string tiktoken = string.Concat(Enumerable.Range(0, 256).Select(i => $"{Convert.ToBase64String([(byte)i])} {i}\n"));
        Directory.CreateDirectory(Path.Combine(_dir, "tiktoken"));
        yield return new Target("tiktoken", "tokenizer.model", Encoding.ASCII.GetBytes(tiktoken), p => Microsoft.ML.Bone.Tokenization.Llama3TiktokenTokenizer.Load(p), 4096, Json: false, Cases: 200);
        {
            string world = SharedData.Path("tokenizers", "rwkv", "rwkv_vocab_v20230424.txt");
            Directory.CreateDirectory(Path.Combine(_dir, "world"));
            byte[] head = File.ReadAllBytes(world)[..20000];
            int cut = Array.LastIndexOf(head, (byte)'\n') + 1;
            yield return new Target("world", "vocab.txt", head[..cut], p => Microsoft.ML.Bone.Tokenization.RwkvWorldTokenizer.Load(p), cut, Json: false, Cases: 150);
        }
    }

    private static IEnumerable<(string Name, string Directory)> ConfigSeeds()
    {
        string root = Path.Combine(_dir, "seeds");
        using var scope = NewDisposeScope();
        var llama = new LlamaConfig
        {
            VocabSize = 64, HiddenSize = 16, IntermediateSize = 32, NumHiddenLayers = 2, NumAttentionHeads = 4, NumKeyValueHeads = 2, HeadDim = 4,
            MaxPositionEmbeddings = 64, RmsNormEps = 1e-5, TieWordEmbeddings = false,
        };
        string dir = Path.Combine(root, "llama");
        using (var model = new LlamaForCausalLM(llama)) model.SaveConfigAndWeights(dir);
        yield return ("config-llama", dir);
        dir = Path.Combine(root, "roberta");
        var roberta = new Microsoft.ML.Bone.Models.Roberta.RobertaConfig { VocabSize = 64, HiddenSize = 16, NumHiddenLayers = 2, NumAttentionHeads = 4, IntermediateSize = 32, MaxPositionEmbeddings = 40, TypeVocabSize = 1 };
        using (var model = new Microsoft.ML.Bone.Models.Roberta.RobertaForSequenceClassification(roberta)) model.SaveConfigAndWeights(dir);
        yield return ("config-roberta", dir);
        yield return ("config-rwkv6", SharedData.Path("models", "tiny-rwkv-6v0-1m", "hf"));
    }

    internal static byte[] MutateBinary(byte[] original, int headerBytes, Random random)
    {
        var bytes = new List<byte>(original);
        int region = Math.Clamp(headerBytes, 1, original.Length);
        int Position() => random.Next(4) == 0 && original.Length > region ? original.Length - 1 - random.Next(Math.Min(region, original.Length)) : random.Next(region);
        int edits = 1 + random.Next(3);
        for (int e = 0; e < edits && bytes.Count > 0; e++)
        {
            int at = Math.Min(Position(), bytes.Count - 1);
            switch (random.Next(6))
            {
                case 0: bytes[at] ^= (byte)(1 << random.Next(8)); break;
                case 1:
                    byte[] interesting = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE];
                    for (int k = 0; k < 1 + random.Next(8) && at + k < bytes.Count; k++) bytes[at + k] = interesting[random.Next(interesting.Length)];
                    break;
                case 2: bytes.InsertRange(at, Enumerable.Range(0, 1 + random.Next(16)).Select(_ => (byte)random.Next(256))); break;
                case 3: bytes.RemoveRange(at, Math.Min(1 + random.Next(16), bytes.Count - at)); break;
                case 4: return [.. bytes.Take(random.Next(bytes.Count))];
                default: bytes[at] = (byte)random.Next(256); break;
            }
        }
        return [.. bytes];
    }

    private static readonly string[] InterestingNumbers =
        ["0", "-1", "1", "2147483647", "2147483648", "-2147483649", "9223372036854775807", "1e308", "1e-320", "3.5", "-0", "65536", "4294967296", "true", "null", "\"7\"", "[]", "{}"];

    internal static byte[] MutateJson(byte[] original, Random random)
    {
        string text = Encoding.UTF8.GetString(original);
        int edits = 1 + random.Next(3);
        for (int e = 0; e < edits; e++)
        {
            var numbers = Regex.Matches(text, @"-?\d+(\.\d+)?([eE][-+]?\d+)?|true|false|null");
            var strings = Regex.Matches(text, "\"[^\"]*\"");
            switch (random.Next(5))
            {
                case 0 when numbers.Count > 0:
                case 1 when numbers.Count > 0:
                    var n = numbers[random.Next(numbers.Count)];
                    text = text[..n.Index] + InterestingNumbers[random.Next(InterestingNumbers.Length)] + text[(n.Index + n.Length)..];
                    break;
                case 2 when strings.Count > 0:
                    var s = strings[random.Next(strings.Count)];
                    string[] replacements = ["\"\"", "\"x\"", "\"MISS\"", "\"LORA\"", "\"llama\"", "\"roberta\"", "0", "[\"a\"]", "\"\\u0000\"", "\"" + new string('a', 1000) + "\""];
                    text = text[..s.Index] + replacements[random.Next(replacements.Length)] + text[(s.Index + s.Length)..];
                    break;
                case 3:
                    int at = random.Next(text.Length);
                    text = text.Remove(at, Math.Min(1 + random.Next(8), text.Length - at));
                    break;
                default:
                    return MutateBinary(Encoding.UTF8.GetBytes(text), original.Length, random);
            }
        }
        return Encoding.UTF8.GetBytes(text);
    }
}
