using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Persistence;
using Microsoft.ML.Bone.Tasks;
using Microsoft.ML.Bone.Tokenization;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone;

/// <summary>A trained causal LM: the LLaMA model with its adapter, the tokenizer and the settings saved models keep.</summary>
internal sealed class CausalLMModel : IDisposable
{
    private const string AdapterEntry = "Adapter.safetensors";
    private const string BaseWeightsEntry = "BaseWeights.safetensors";
    private const string ConfigEntry = "BaseConfig.json";
    private const string TokenizerEntry = "Tokenizer.model";

    public CausalLMModel(LlamaForCausalLM model, byte[] tokenizerModel, AdapterModel? adapted, CausalLMSpec spec)
    {
        Model = model;
        TokenizerModel = tokenizerModel;
        string temp = Path.Combine(Path.GetTempPath(), $"bone-tok-{Guid.NewGuid():N}.model");
        File.WriteAllBytes(temp, tokenizerModel);
        try { Tokenizer = CausalTokenizers.Load(temp); }
        finally { File.Delete(temp); }
        Adapted = adapted;
        Spec = spec;
    }

    public LlamaForCausalLM Model { get; }
    public byte[] TokenizerModel { get; }
    public ICausalTokenizer Tokenizer { get; }
    public AdapterModel? Adapted { get; }
    public CausalLMSpec Spec { get; }

    /// <summary>Completions for a batch of prompts, cut at the first stop string.</summary>
    public string[] Complete(IReadOnlyList<string> prompts, Action<int, string>? onToken = null)
    {
        int[][] ids = prompts.Select(p => Tokenizer.Encode(Spec.Format(p), addBos: true)).ToArray();
        var eos = new HashSet<int>(Model.Config.EosTokenIds) { Tokenizer.EosId };
        var generated = TextGeneration.Generate(Model, ids, Spec.Generation, eos, Tokenizer.PadId,
            Spec.StopStrings.Length == 0 ? null : (_, tokens) => Spec.StopStrings.Any(Tokenizer.Decode(tokens).Contains),
            onToken is null ? null : (row, token) => onToken(row, Tokenizer.Decode([token])));
        return generated.Select(g => CutAtStop(Tokenizer.Decode(g))).ToArray();
    }

    private string CutAtStop(string text)
    {
        int cut = Spec.StopStrings.Select(s => text.IndexOf(s, StringComparison.Ordinal)).Where(i => i >= 0).DefaultIfEmpty(text.Length).Min();
        return text[..cut];
    }

    /// <summary>Prompt/response token ids for training and evaluation (response ends with EOS).</summary>
    public PromptResponse Encode(string prompt, string response) =>
        new(Tokenizer.Encode(Spec.Format(prompt), addBos: true), [.. Tokenizer.Encode(response, addBos: false), Tokenizer.EosId]);

    public void Save(ModelSaveContext ctx, MlNetInternals.ModelVersion version)
    {
        BinaryWriter writer = MlNetInternals.BeginSave(ctx, version);
        writer.Write(Spec.ToJson());
        MlNetInternals.SaveBinaryStream(ctx, TokenizerEntry, w => w.Write(TokenizerModel));
        if (Spec.Embedded)
        {
            MlNetInternals.SaveBinaryStream(ctx, ConfigEntry, w => w.Write(System.Text.Encoding.UTF8.GetBytes(Model.Config.ToJson())));
            ZipTensors.Save(ctx, BaseWeightsEntry, Model.state_dict().Where(p => !p.Key.Contains(".adapter.", StringComparison.Ordinal)));
        }
        if (Adapted is not null) ZipTensors.Save(ctx, AdapterEntry, AdaptedModelState.Collect(Adapted));
    }

    public static CausalLMModel Load(object ctx, MlNetInternals.ModelVersion version)
    {
        BinaryReader reader = MlNetInternals.BeginLoad(ctx, version);
        CausalLMSpec spec = CausalLMSpec.FromJson(reader.ReadString());
        byte[] tokenizer = [];
        if (!MlNetInternals.TryLoadBinaryStream(ctx, TokenizerEntry, r => tokenizer = r.ReadBytes((int)r.BaseStream.Length)))
            throw new InvalidDataException($"The model zip has no entry '{TokenizerEntry}'.");
        using var source = SavedBase.Open(ctx, spec.Embedded, spec.BaseDirectory, spec.BaseSha256,
            [(ConfigEntry, "config.json"), (BaseWeightsEntry, SafetensorsCheckpoint.SingleFileName)]);
        LlamaForCausalLM model = CausalLMSources.Load(source.Directory, spec.DType);
        AdapterModel? adapted = AdaptedModelState.RestoreFromZip(ctx, AdapterEntry, model, spec.AdapterConfigJson, baseIsResidual: spec.Embedded);
        model.eval();
        return new CausalLMModel(model, tokenizer, adapted, spec with { BaseDirectory = spec.Embedded ? spec.BaseDirectory : source.Directory });
    }

    public void Dispose() => Model.Dispose();
}

/// <summary>Where causal LMs come from: a Hugging Face LLaMA directory or a llama2.c <c>.bin</c> file.</summary>
internal static class CausalLMSources
{
    public static LlamaForCausalLM Load(string path, BaseDType dtype)
    {
        if (File.Exists(path) && path.EndsWith(".bin", StringComparison.OrdinalIgnoreCase))
        {
            var model = Llama2cCheckpoint.Load(path);
            if (dtype != BaseDType.Float32) model.to(dtype.ToScalarType());
            return model;
        }
        if (!Directory.Exists(path)) throw new DirectoryNotFoundException($"ModelPath: '{path}' is neither a model directory nor a llama2.c .bin file.");
        string modelType = Models.HfConfig.Load(path).String("model_type", "llama");
        if (modelType != "llama") throw new InvalidDataException($"{Path.Combine(path, "config.json")}: model_type \"{modelType}\" is not a LLaMA model.");
        return LlamaForCausalLM.FromPretrained(path, dtype.ToScalarType());
    }
}
