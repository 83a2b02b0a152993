using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.IO;

namespace Microsoft.ML.Bone.Tests.IO;

[TestClass]
public sealed class PeftAdapterConfigTests
{
    [TestMethod]
    public void WritesMissConfigAsPeftDoes()
    {
        // The fields of PEFT's MissConfig (src/peft/tuners/miss/config.py) plus PeftConfig's own, sorted as
        // save_pretrained writes them.
        var config = new BoneConfig { R = 64, TargetModules = ["q_proj", "v_proj"] };
        string json = new PeftAdapterConfig(config, "CAUSAL_LM", "meta-llama/Llama-2-7b-hf").ToJson();
        const string expected = """
            {
              "auto_mapping": null,
              "base_model_name_or_path": "meta-llama/Llama-2-7b-hf",
              "bias": "none",
              "exclude_modules": null,
              "inference_mode": true,
              "init_weights": true,
              "layers_pattern": null,
              "layers_to_transform": null,
              "mini_r": 1,
              "miss_dropout": 0.0,
              "modules_to_save": null,
              "peft_type": "MISS",
              "r": 64,
              "revision": null,
              "target_modules": [
                "q_proj",
                "v_proj"
              ],
              "task_type": "CAUSAL_LM"
            }
            """;
        Assert.AreEqual(expected.ReplaceLineEndings("\n"), json.ReplaceLineEndings("\n"));
    }

    [TestMethod]
    public void WritesLegacyBoneConfigOnRequest()
    {
        var config = new BoneConfig { R = 64, TargetModules = ["q_proj", "v_proj"] };
        string json = new PeftAdapterConfig(config, "CAUSAL_LM", "meta-llama/Llama-2-7b-hf", PeftFormat.Bone).ToJson();
        const string expected = """
            {
              "auto_mapping": null,
              "base_model_name_or_path": "meta-llama/Llama-2-7b-hf",
              "bias": "none",
              "exclude_modules": null,
              "inference_mode": true,
              "init_weights": true,
              "layers_pattern": null,
              "layers_to_transform": null,
              "modules_to_save": null,
              "peft_type": "BONE",
              "r": 64,
              "revision": null,
              "target_modules": [
                "q_proj",
                "v_proj"
              ],
              "task_type": "CAUSAL_LM"
            }
            """;
        Assert.AreEqual(expected.ReplaceLineEndings("\n"), json.ReplaceLineEndings("\n"));
        var mini = new BoneConfig { R = 4, Variant = BoneVariant.Mini, MiniR = 2, TargetModules = ["q"] };
        StringAssert.Contains(Assert.ThrowsExactly<NotSupportedException>(() => new PeftAdapterConfig(mini, Format: PeftFormat.Bone).ToJson()).Message, "MiSS-mini has no BONE form");
        var dropout = new BoneConfig { R = 4, Dropout = 0.1, TargetModules = ["q"] };
        StringAssert.Contains(Assert.ThrowsExactly<NotSupportedException>(() => new PeftAdapterConfig(dropout, Format: PeftFormat.Bone).ToJson()).Message, "BONE has no dropout");
    }

    [TestMethod]
    public void MiniAndDropoutRoundTripThroughMiss()
    {
        var config = new BoneConfig { R = 4, Variant = BoneVariant.Mini, MiniR = 2, Dropout = 0.05, TargetModules = ["q"] };
        string json = new PeftAdapterConfig(config).ToJson();
        StringAssert.Contains(json, "\"init_weights\": \"mini\"");
        StringAssert.Contains(json, "\"mini_r\": 2");
        StringAssert.Contains(json, "\"miss_dropout\": 0.05");
        var read = PeftAdapterConfig.Parse(json, "c");
        Assert.AreEqual(PeftFormat.Miss, read.Format);
        var bone = (BoneConfig)read.Config;
        Assert.AreEqual(BoneVariant.Mini, bone.Variant);
        Assert.AreEqual(2, bone.MiniR);
        Assert.AreEqual(0.05, bone.Dropout);
        Assert.AreEqual(4, bone.R);
    }

    [TestMethod]
    public void BatIsWrittenAsInitWeightsBat()
    {
        string json = new PeftAdapterConfig(new BoneConfig { R = 4, Variant = BoneVariant.Bat, TargetModules = ["query", "value"], ModulesToSave = ["classifier", "score"] }, "SEQ_CLS").ToJson();
        StringAssert.Contains(json, "\"init_weights\": \"bat\"");
        StringAssert.Contains(json, "\"modules_to_save\": [\n    \"classifier\",\n    \"score\"\n  ]".Replace("\n", Environment.NewLine));
        Assert.ThrowsExactly<NotSupportedException>(() => new PeftAdapterConfig(new BoneConfig { R = 4, Variant = BoneVariant.Bat, BatGrouping = BatGrouping.InputBlock, TargetModules = ["q"] }).ToJson());
    }

    [TestMethod]
    public void ReadsPeft018LlamaBoneConfig()
    {
        const string json = """
            {
              "auto_mapping": null,
              "base_model_name_or_path": "meta-llama/Llama-2-7b-hf",
              "bias": "none",
              "exclude_modules": null,
              "inference_mode": true,
              "init_weights": true,
              "layers_pattern": null,
              "layers_to_transform": null,
              "modules_to_save": null,
              "peft_type": "BONE",
              "peft_version": "0.18.1",
              "r": 64,
              "revision": null,
              "target_modules": ["q_proj", "o_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "down_proj"],
              "task_type": "CAUSAL_LM"
            }
            """;
        var parsed = PeftAdapterConfig.Parse(json, "adapter_config.json");
        var bone = (BoneConfig)parsed.Config;
        Assert.AreEqual(64, bone.R);
        Assert.AreEqual(BoneVariant.Bone, bone.Variant);
        Assert.IsFalse(bone.RandomInit);
        CollectionAssert.AreEqual(new[] { "q_proj", "o_proj", "k_proj", "v_proj", "gate_proj", "up_proj", "down_proj" }, bone.TargetModules.ToArray());
        Assert.AreEqual("CAUSAL_LM", parsed.TaskType);
        Assert.AreEqual("meta-llama/Llama-2-7b-hf", parsed.BaseModelNameOrPath);
    }

    [TestMethod]
    public void ReadsBatMissAndLoraVariants()
    {
        var bat = (BoneConfig)PeftAdapterConfig.Parse("""{"peft_type":"BONE","r":2,"init_weights":"bat","target_modules":"model\\.layers\\.\\d+\\.q_proj","layers_to_transform":null}""", "c").Config;
        Assert.AreEqual(BoneVariant.Bat, bat.Variant);
        Assert.AreEqual(@"model\.layers\.\d+\.q_proj", bat.TargetModulesRegex);

        var miss = (BoneConfig)PeftAdapterConfig.Parse("""{"peft_type":"MISS","r":8,"init_weights":true,"mini_r":1,"miss_dropout":0.0,"target_modules":["receptance"]}""", "c").Config;
        Assert.AreEqual(8, miss.R);

        var lora = (LoraConfig)PeftAdapterConfig.Parse("""{"peft_type":"LORA","r":16,"lora_alpha":32,"use_rslora":true,"init_lora_weights":"pissa_niter_4","target_modules":["q_proj"],"layers_to_transform":3,"layers_pattern":"layers","rank_pattern":{},"alpha_pattern":{}}""", "c").Config;
        Assert.AreEqual((16, 32.0, true, LoraInit.PiSSA, 4), (lora.R, lora.Alpha, lora.UseRsLora, lora.Init, lora.PissaIterations));
        CollectionAssert.AreEqual(new[] { 3 }, lora.LayersToTransform.ToArray());
        Assert.AreEqual("layers", lora.LayersPattern);
    }

    [TestMethod]
    public void RoundTripsLoraConfig()
    {
        var config = new LoraConfig { R = 4, Alpha = 12, Dropout = 0.05, Init = LoraInit.OLoRA, TargetModules = ["a", "b"], ExcludeModules = ["c"], LayersToTransform = [0, 2], LayersPattern = "layers", ModulesToSave = ["classifier"] };
        var back = (LoraConfig)PeftAdapterConfig.Parse(new PeftAdapterConfig(config, "SEQ_CLS").ToJson(), "c").Config;
        Assert.AreEqual((4, 12.0, 0.05, LoraInit.OLoRA), (back.R, back.Alpha, back.Dropout, back.Init));
        CollectionAssert.AreEqual(config.TargetModules.ToArray(), back.TargetModules.ToArray());
        CollectionAssert.AreEqual(config.ExcludeModules.ToArray(), back.ExcludeModules.ToArray());
        CollectionAssert.AreEqual(config.LayersToTransform.ToArray(), back.LayersToTransform.ToArray());
        CollectionAssert.AreEqual(config.ModulesToSave.ToArray(), back.ModulesToSave.ToArray());
    }

    [TestMethod]
    [DataRow("{", "not valid JSON")]
    [DataRow("[1]", "expected a JSON object")]
    [DataRow("""{"r":4,"target_modules":["q"]}""", "\"peft_type\" is missing")]
    [DataRow("""{"peft_type":"IA3","r":4,"target_modules":["q"]}""", "\"peft_type\" is \"IA3\"")]
    [DataRow("""{"peft_type":"BONE","target_modules":["q"]}""", "\"r\" is missing")]
    [DataRow("""{"peft_type":"BONE","r":"64","target_modules":["q"]}""", "\"r\" must be an integer")]
    [DataRow("""{"peft_type":"BONE","r":0,"target_modules":["q"]}""", "r must be a positive integer")]
    [DataRow("""{"peft_type":"BONE","r":4,"target_modules":null}""", "\"target_modules\" must be a list")]
    [DataRow("""{"peft_type":"BONE","r":4,"bias":"all","target_modules":["q"]}""", "\"bias\" is \"all\"")]
    [DataRow("""{"peft_type":"BONE","r":4,"init_weights":"mini","target_modules":["q"]}""", "\"init_weights\" is \"mini\"")]
    [DataRow("""{"peft_type":"LORA","r":4,"use_dora":true,"target_modules":["q"]}""", "DoRA is not supported")]
    [DataRow("""{"peft_type":"LORA","r":4,"init_lora_weights":"loftq","target_modules":["q"]}""", "\"init_lora_weights\" is \"loftq\"")]
    [DataRow("""{"peft_type":"LORA","r":4,"rank_pattern":{"q":8},"target_modules":["q"]}""", "\"rank_pattern\" is not empty")]
    public void BadConfigsGiveErrorsNamingTheFileAndField(string json, string expected)
    {
        var e = Assert.ThrowsExactly<InvalidDataException>(() => PeftAdapterConfig.Parse(json, "/a/adapter_config.json"));
        StringAssert.StartsWith(e.Message, "/a/adapter_config.json: ");
        StringAssert.Contains(e.Message, expected);
    }
}
