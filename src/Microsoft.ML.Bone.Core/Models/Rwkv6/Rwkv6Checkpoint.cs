using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Nn;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Models.Rwkv6;

/// <summary>
/// Loads RWKV-6 from the three formats its users have, into the same module: Hugging Face RWKV6 directories
/// (config.json + safetensors, <c>rwkv.blocks.N.attention.*</c>), BlinkDL <c>.pth</c> files (RWKV-LM / RWKV-PEFT /
/// ChatRWKV, read by the restricted <see cref="PthFile"/>) and rwkv.cpp <c>.bin</c> files (FP32 / FP16). Files without
/// a config get it from their tensor shapes. A state-tuning file's <c>time_state</c> tensors load too.
/// </summary>
public static class Rwkv6Checkpoint
{
    /// <summary>File kind names for the model registry.</summary>
    public const string PthKind = "rwkv6.pth", RwkvCppKind = "rwkv6.cpp";

    /// <summary>True when <paramref name="path"/> is a <c>.pth</c> zip holding an RWKV-6 state dict.</summary>
    public static bool IsRwkv6Pth(string path)
    {
        if (!path.EndsWith(".pth", StringComparison.OrdinalIgnoreCase) || !File.Exists(path)) return false;
        try
        {
            using var file = PthFile.Open(path);
            return file.Contains("blocks.0.att.time_maa_x");
        }
        catch (PthFormatException) { return false; }
    }

    /// <summary>True when <paramref name="path"/> is an rwkv.cpp file with RWKV-6 tensors.</summary>
    public static bool IsRwkv6Cpp(string path)
    {
        if (!RwkvCppFile.IsRwkvCppFile(path)) return false;
        try
        {
            using var file = RwkvCppFile.Open(path);
            return file.Shape("blocks.0.att.time_maa_x") is not null;
        }
        catch (InvalidDataException) { return false; }
    }

    /// <summary>Loads <paramref name="path"/> (directory, <c>.pth</c> or rwkv.cpp <c>.bin</c>) in <paramref name="options"/>' dtype and device.</summary>
    public static Rwkv6ForCausalLM Load(string path, ModelLoadOptions? options = null)
    {
        options ??= ModelLoadOptions.Default;
        if (Directory.Exists(path))
        {
            using var checkpoint = SafetensorsCheckpoint.Open(path);
            long[]? Shape(string blink) => checkpoint.Contains(ToHf(blink)) ? checkpoint.Entry(ToHf(blink)).Shape : null;
            var config = Rwkv6Config.FromHf(HfConfig.Load(path), Shape, checkpoint.Description);
            var source = new Source(checkpoint.Description, checkpoint.Names.Select(ToBlink).ToList(), Shape,
                (blink, target, fingerprint) => checkpoint.ReadInto(ToHf(blink), target, fingerprint),
                checkpoint.Entry(ToHf("emb.weight")).DType.ToScalarType());
            var model = Build(config, source, options);
            options.Fingerprint?.AddFile(Path.Combine(path, "config.json"));
            return model;
        }
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such RWKV-6 checkpoint (a Hugging Face directory, a .pth or an rwkv.cpp .bin).", path);
        if (RwkvCppFile.IsRwkvCppFile(path))
        {
            using var file = RwkvCppFile.Open(path);
            var config = Rwkv6Config.FromShapes(file.Shape, path);
            return Build(config, new Source(path, file.Names.ToList(), file.Shape, file.ReadInto, ScalarType.Float32), options);
        }
        using (var pth = PthFile.Open(path))
        {
            long[]? Shape(string blink) => pth.Contains(blink) ? pth[blink].Shape : null;
            var config = Rwkv6Config.FromShapes(Shape, path);
            return Build(config, new Source(path, pth.Entries.Select(e => e.Name).ToList(), Shape, pth.ReadInto, pth["emb.weight"].DType), options);
        }
    }

    /// <summary>The model of <paramref name="path"/> on the meta device, from its config / tensor headers only (parameter counts).</summary>
    public static Rwkv6ForCausalLM Shapes(string path)
    {
        Rwkv6Config config;
        if (Directory.Exists(path))
        {
            using var checkpoint = SafetensorsCheckpoint.Open(path);
            config = Rwkv6Config.FromHf(HfConfig.Load(path), blink => checkpoint.Contains(ToHf(blink)) ? checkpoint.Entry(ToHf(blink)).Shape : null, checkpoint.Description);
        }
        else if (RwkvCppFile.IsRwkvCppFile(path))
        {
            using var file = RwkvCppFile.Open(path);
            config = Rwkv6Config.FromShapes(file.Shape, path);
        }
        else
        {
            using var pth = PthFile.Open(path);
            config = Rwkv6Config.FromShapes(blink => pth.Contains(blink) ? pth[blink].Shape : null, path);
        }
        return new Rwkv6ForCausalLM(config, ParameterPlacement.ShapesOnly());
    }

    /// <summary>BlinkDL name → Hugging Face RWKV6 name (convert_rwkv6_checkpoint_to_hf.py's renaming).</summary>
    public static string ToHf(string blink)
    {
        if (blink == "emb.weight") return "rwkv.embeddings.weight";
        if (blink == "head.weight") return blink;
        string name = blink.Replace(".att.", ".attention.", StringComparison.Ordinal).Replace(".ffn.", ".feed_forward.", StringComparison.Ordinal);
        if (name.StartsWith("blocks.0.ln0.", StringComparison.Ordinal)) name = "blocks.0.pre_ln." + name["blocks.0.ln0.".Length..];
        return "rwkv." + name;
    }

    /// <summary>Hugging Face RWKV6 name → BlinkDL name.</summary>
    public static string ToBlink(string hf)
    {
        if (hf == "rwkv.embeddings.weight") return "emb.weight";
        if (!hf.StartsWith("rwkv.", StringComparison.Ordinal)) return hf;
        string name = hf["rwkv.".Length..].Replace(".attention.", ".att.", StringComparison.Ordinal).Replace(".feed_forward.", ".ffn.", StringComparison.Ordinal);
        if (name.StartsWith("blocks.0.pre_ln.", StringComparison.Ordinal)) name = "blocks.0.ln0." + name["blocks.0.pre_ln.".Length..];
        return name;
    }

    /// <summary>
    /// Writes the model as a BlinkDL <c>.pth</c> (BlinkDL names and shapes; RWKV-LM, RWKV-PEFT and ChatRWKV load it),
    /// in <paramref name="dtype"/> (default: the model's; BlinkDL's own files are bf16). <paramref name="transform"/>
    /// receives Hugging Face names (the model's own), e.g. <see cref="Adapters.AdapterModel.MergedWeightTransform"/>.
    /// A state-tuned model's <c>blocks.N.att.time_state</c> is included, as RWKV-PEFT saves it.
    /// </summary>
    public static void SavePth(Rwkv6ForCausalLM model, string path, ScalarType? dtype = null, WeightTransform? transform = null)
    {
        var tensors = BlinkStateDict(model);
        var hfNames = tensors.ToDictionary(p => p.Key, p => Rwkv6Checkpoint.ToHf(p.Key), StringComparer.Ordinal);
        PthWriter.Write(path, tensors, transform is null ? null : (blink, value) => transform(hfNames[blink], value), dtype);
    }

    /// <summary>The model's tensors (adapters excluded) under BlinkDL names, as a <c>.pth</c> holds them.</summary>
    public static List<KeyValuePair<string, Tensor>> BlinkStateDict(Rwkv6ForCausalLM model, ScalarType? dtype = null) =>
        ModuleWeights.StateDict(model, dtype).Select(p => new KeyValuePair<string, Tensor>(ToBlink(p.Key), p.Value)).ToList();

    private sealed record Source(string Description, List<string> Names, Func<string, long[]?> Shape, Action<string, Tensor, WeightFingerprint?> ReadInto, ScalarType StoredDType);

    private static Rwkv6ForCausalLM Build(Rwkv6Config config, Source source, ModelLoadOptions options)
    {
        ScalarType dtype = options.DType ?? source.StoredDType;
        bool stateTuned = source.Shape("blocks.0.att.time_state") is not null;
        var model = new Rwkv6ForCausalLM(config, ParameterPlacement.ForLoading(dtype, options.Device));
        try
        {
            if (stateTuned) model.EnableStateTuning();
            using var noGrad = no_grad();
            var used = new HashSet<string>(StringComparer.Ordinal);
            foreach (var (name, target) in model.state_dict())
            {
                string blink = ToBlink(name);
                long[] shape = source.Shape(blink) ?? throw new InvalidDataException($"{source.Description}: tensor '{blink}' is missing (needed for '{name}').");
                if (!shape.SequenceEqual(target.shape))
                    throw new InvalidDataException($"{source.Description}: tensor '{blink}' is [{string.Join(", ", shape)}] but this model needs [{string.Join(", ", target.shape)}].");
                source.ReadInto(blink, target, options.Fingerprint);
                used.Add(blink);
            }
            if (source.Names.FirstOrDefault(n => !used.Contains(n)) is { } extra)
                throw new InvalidDataException($"{source.Description}: tensor '{extra}' has no place in an RWKV-6 model of {config.NumHiddenLayers} blocks (is it an adapter file, or another RWKV version?).");
        }
        catch
        {
            model.Dispose();
            throw;
        }
        model.eval();
        return model;
    }
}
