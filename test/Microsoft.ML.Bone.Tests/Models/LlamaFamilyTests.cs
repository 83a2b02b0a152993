using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Nn;
using TorchSharp;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.Models;

/// <summary>Mistral and Qwen2 through the registry, transformers v5 config forms, and config validation.</summary>
[TestClass]
public sealed class LlamaFamilyTests
{
    private string _dir = "";

    [TestInitialize]
    public void Init() => _dir = Directory.CreateTempSubdirectory("bone-family-").FullName;

    [TestCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);

    private static readonly long[,] Ids = { { 1, 5, 17, 33, 8, 2, 39 }, { 1, 9, 9, 21, 4, 30, 12 } };

    private static Dictionary<string, Tensor> StateDict(nn.Module m) => m.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());

    private static Tensor Input(long[,] ids) => tensor(ids.Cast<long>().ToArray(), [ids.GetLength(0), ids.GetLength(1)]);

    [TestMethod]
    public void MistralWithASlidingWindowMatchesTheIndependentForwardPass()
    {
        using var scope = NewDisposeScope();
        var config = TinyLlama.Config() with { ModelType = "mistral", SlidingWindow = 3 };
        var original = TinyLlama.Create(config);
        original.SaveConfigAndWeights(_dir);
        StringAssert.Contains(File.ReadAllText(Path.Combine(_dir, "config.json")), "\"MistralForCausalLM\"");

        var model = ModelRegistry.LoadCausalLM(_dir);
        Assert.AreEqual("mistral", model.ModelType);
        Assert.AreEqual(3, ((LlamaForCausalLM)model).Config.WindowOf(1));
        Tensor expected = TinyLlama.Reference(StateDict(original), config, Ids, windows: [3, 3]);
        using var noGrad = no_grad();
        AssertClose(expected, model.Forward(Input(Ids)), 1e-4, "mistral");
        // The window changes the result: full attention differs from it.
        Tensor full = TinyLlama.Reference(StateDict(original), config, Ids);
        Assert.IsTrue((full - expected).abs().max().item<double>() > 1e-3, "the window matters for 7 tokens");
    }

    [TestMethod]
    public void Qwen2WithBiasesTiedEmbeddingsAndUpperLayerWindowsMatchesTheIndependentForwardPass()
    {
        using var scope = NewDisposeScope();
        var config = TinyLlama.Config(tied: true) with { ModelType = "qwen2", QkvBias = true, SlidingWindow = 4, SlidingLayers = [false, true], BosTokenId = null };
        var original = TinyLlama.Create(config);
        original.SaveConfigAndWeights(_dir);
        // Qwen2 as transformers writes it: no layer_types, the window from max_window_layers up.
        string json = File.ReadAllText(Path.Combine(_dir, "config.json"));
        var node = System.Text.Json.Nodes.JsonNode.Parse(json)!.AsObject();
        node.Remove("layer_types");
        node["max_window_layers"] = 1;
        File.WriteAllText(Path.Combine(_dir, "config.json"), node.ToJsonString());
        Assert.IsTrue(StateDict(original).ContainsKey("model.layers.0.self_attn.q_proj.bias"));
        Assert.IsFalse(StateDict(original).ContainsKey("model.layers.0.self_attn.o_proj.bias"));
        Assert.IsFalse(StateDict(original).ContainsKey("lm_head.weight"));

        var model = (LlamaForCausalLM)ModelRegistry.LoadCausalLM(_dir);
        Assert.AreEqual((null, 4), (model.Config.WindowOf(0), model.Config.WindowOf(1)));
        Assert.IsNull(model.BosTokenId);
        Tensor expected = TinyLlama.Reference(StateDict(original), config, Ids, windows: [null, 4]);
        using var noGrad = no_grad();
        AssertClose(expected, model.Forward(Input(Ids)), 1e-4, "qwen2");
    }

    [TestMethod]
    public void Qwen2WithoutUseSlidingWindowAttendsFully()
    {
        var c = LlamaConfig.FromHf(HfConfig.Parse("""{"model_type":"qwen2","vocab_size":40,"hidden_size":16,"intermediate_size":24,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"sliding_window":4,"use_sliding_window":false,"max_window_layers":1,"eos_token_id":2}""", "config.json"));
        Assert.IsNull(c.WindowOf(1));
        Assert.IsTrue(c.QkvBias);
        Assert.IsFalse(c.OutputBias);
    }

    [TestMethod]
    public void TransformersV5RopeParametersAreReadLikeRopeScaling()
    {
        using var scope = NewDisposeScope();
        var config = TinyLlama.Config(new RopeScaling("linear", 2));
        var original = TinyLlama.Create(config);
        original.SaveConfigAndWeights(_dir);
        var node = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(_dir, "config.json")))!.AsObject();
        node.Remove("rope_theta");
        node.Remove("rope_scaling");
        node["rope_parameters"] = new System.Text.Json.Nodes.JsonObject { ["rope_type"] = "linear", ["factor"] = 2.0, ["rope_theta"] = 500 };
        File.WriteAllText(Path.Combine(_dir, "config.json"), node.ToJsonString());

        var model = (LlamaForCausalLM)ModelRegistry.LoadCausalLM(_dir);
        Assert.AreEqual(500, model.Config.RopeTheta);
        Assert.AreEqual(new RopeScaling("linear", 2), model.Config.RopeScaling);
        using var noGrad = no_grad();
        AssertClose(TinyLlama.Reference(StateDict(original), config, Ids), model.Forward(Input(Ids)), 1e-4, "rope_parameters");
    }

    [TestMethod]
    public void AnUnknownModelTypeListsTheSupportedOnes()
    {
        File.WriteAllText(Path.Combine(_dir, "config.json"), """{"model_type":"gpt2"}""");
        var e = Assert.ThrowsExactly<InvalidDataException>(() => ModelRegistry.LoadCausalLM(_dir));
        foreach (string name in new[] { "gpt2", "config.json", "llama", "mistral", "qwen2", "llama2.c", "roberta" }) StringAssert.Contains(e.Message, name);
        File.WriteAllText(Path.Combine(_dir, "config.json"), """{"hidden_size":16}""");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => ModelRegistry.LoadCausalLM(_dir)).Message, "\"model_type\" is missing");
    }

    public static IEnumerable<object[]> MalformedFields =>
    [
        ["eos_token_id", "\"</s>\"", "eos_token_id"],
        ["eos_token_id", "[2, \"x\"]", "eos_token_id"],
        ["rope_scaling", "3", "rope_scaling"],
        ["rope_scaling", """{"rope_type":"linear","factor":"two"}""", "rope_scaling.factor"],
        ["rope_scaling", """{"rope_type":"linear","factor":-1}""", "rope_scaling.factor"],
        ["rope_theta", "0", "rope_theta"],
        ["hidden_size", "0", "hidden_size"],
        ["hidden_size", "1000000000", "hidden_size"],
        ["num_hidden_layers", "-3", "num_hidden_layers"],
        ["vocab_size", "1e20", "vocab_size"],
        ["intermediate_size", "null", "intermediate_size"],
        ["rms_norm_eps", "\"small\"", "rms_norm_eps"],
        ["num_key_value_heads", "3", "num_key_value_heads"],
        ["sliding_window", "-4", "sliding_window"],
    ];

    [TestMethod]
    [DynamicData(nameof(MalformedFields))]
    public void MalformedConfigValuesNameTheFileAndField(string field, string value, string named)
    {
        var node = System.Text.Json.Nodes.JsonNode.Parse(TinyLlama.Config() with { ModelType = "mistral" } is var c ? c.ToJson() : "")!.AsObject();
        node[field] = System.Text.Json.Nodes.JsonNode.Parse(value);
        File.WriteAllText(Path.Combine(_dir, "config.json"), node.ToJsonString());
        var e = Assert.ThrowsExactly<InvalidDataException>(() => LlamaConfig.Load(_dir));
        StringAssert.Contains(e.Message, Path.Combine(_dir, "config.json"));
        StringAssert.Contains(e.Message, $"\"{named}\"");
    }

    [TestMethod]
    public void AConfigThatDisagreesWithTheCheckpointIsRefusedBeforeAnythingIsAllocated()
    {
        using var scope = NewDisposeScope();
        var config = TinyLlama.Config();
        TinyLlama.Create(config).SaveConfigAndWeights(_dir);
        // Within the bounds, but a 1M-wide MLP would need gigabytes: the shapes are compared on the meta device first.
        File.WriteAllText(Path.Combine(_dir, "config.json"), (config with { IntermediateSize = 1_000_000 }).ToJson());
        var e = Assert.ThrowsExactly<InvalidDataException>(() => LlamaForCausalLM.FromPretrained(_dir));
        StringAssert.Contains(e.Message, "mlp.gate_proj.weight");
        StringAssert.Contains(e.Message, "config.json");
        // A checkpoint with more layers than the config says is an error, not silently truncated.
        File.WriteAllText(Path.Combine(_dir, "config.json"), (config with { NumHiddenLayers = 1 }).ToJson());
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => LlamaForCausalLM.FromPretrained(_dir)).Message, "model.layers.1.");
    }
}
