using System.Text.Json;
using System.Text.Json.Nodes;

namespace Microsoft.ML.Bone.Tests.IO;

/// <summary>
/// The adapter files written here against PEFT's own source at each release (config dataclass fields and
/// <c>adapter_layer_names</c>, extracted by IO/PeftSource/extract_peft_fields.py): every field written is one PEFT
/// knows (so no release warns about or drops it), every field of the method is written, and tensor names end in a
/// suffix PEFT loads.
/// </summary>
[TestClass]
public sealed class PeftSourceCompatibilityTests
{
    private static readonly JsonObject Releases = JsonNode.Parse(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "IO", "PeftSource", "peft_fields.json")))!.AsObject();

    private static string[] Strings(JsonNode? node) => node!.AsArray().Select(n => n!.GetValue<string>()).ToArray();

    private static IEnumerable<(string Release, string[] Base, string[] Fields, string[] LayerNames)> ReleasesWith(string peftType) =>
        Releases.Where(r => r.Value![peftType] is not null)
            .Select(r => (r.Key, Strings(r.Value!["PeftConfig"]), Strings(r.Value![peftType]!["fields"]), Strings(r.Value![peftType]!["adapter_layer_names"])));

    private static string[] Keys(string json) => JsonNode.Parse(json)!.AsObject().Select(p => p.Key).ToArray();

    private static void AssertReadable(string peftType, string json, string blockSuffix, string what)
    {
        var releases = ReleasesWith(peftType).ToList();
        Assert.IsNotEmpty(releases);
        foreach (var (release, baseFields, fields, layerNames) in releases)
        {
            string[] unknown = Keys(json).Except(baseFields).Except(fields).ToArray();
            Assert.IsEmpty(unknown, $"{what}: PEFT {release} has no field {string.Join(", ", unknown)}");
            CollectionAssert.Contains(layerNames, blockSuffix, $"{what}: PEFT {release} loads '{blockSuffix}' tensors");
        }
    }

    [TestMethod]
    public void MissFilesUseOnlyMissConfigFieldsAndWriteAllOfThem()
    {
        foreach (var config in new[]
        {
            new BoneConfig { R = 8, TargetModules = ["q_proj"] },
            new BoneConfig { R = 8, Variant = BoneVariant.Bat, TargetModules = ["q_proj"], ModulesToSave = ["score"] },
            new BoneConfig { R = 8, Variant = BoneVariant.Mini, MiniR = 4, Dropout = 0.1, TargetModules = ["q_proj"], LayersToTransform = [0] },
        })
        {
            string json = new PeftAdapterConfig(config, "CAUSAL_LM", "base").ToJson();
            AssertReadable("MISS", json, "miss_block", $"MISS {config.Variant}");
            foreach (var (release, _, fields, _) in ReleasesWith("MISS"))
                CollectionAssert.IsSubsetOf(fields, Keys(json), $"every MissConfig field of PEFT {release} is written");
        }
    }

    [TestMethod]
    public void LegacyBoneFilesUseOnlyBoneConfigFields()
    {
        string json = new PeftAdapterConfig(new BoneConfig { R = 8, Variant = BoneVariant.Bat, TargetModules = ["q_proj"] }, "CAUSAL_LM", "base", PeftFormat.Bone).ToJson();
        AssertReadable("BONE", json, "bone_block", "BONE");
        foreach (var (release, _, fields, _) in ReleasesWith("BONE"))
            CollectionAssert.IsSubsetOf(fields, Keys(json), $"every BoneConfig field of PEFT {release} is written");
    }

    [TestMethod]
    public void LoraFilesUseOnlyFieldsEveryReleaseKnows()
    {
        string json = new PeftAdapterConfig(new LoraConfig { R = 4, Alpha = 8, Dropout = 0.05, TargetModules = ["q_proj"] }, "CAUSAL_LM", "base").ToJson();
        AssertReadable("LORA", json, "lora_A", "LORA");
        AssertReadable("LORA", json, "lora_B", "LORA");
    }

    [TestMethod]
    public void TheReadmeTableMatchesPeftsReleases()
    {
        // README: MISS loads in PEFT 0.17 and later, BONE in 0.14 to 0.18, LORA in every release from 0.14.
        string[] miss = ReleasesWith("MISS").Select(r => r.Release).ToArray();
        string[] bone = ReleasesWith("BONE").Select(r => r.Release).ToArray();
        CollectionAssert.AreEquivalent(Releases.Select(r => r.Key).Where(v => !v.StartsWith("v0.14", StringComparison.Ordinal) && !v.StartsWith("v0.15", StringComparison.Ordinal) && !v.StartsWith("v0.16", StringComparison.Ordinal)).ToArray(), miss);
        CollectionAssert.AreEquivalent(new[] { "v0.14.0", "v0.15.2", "v0.16.0", "v0.17.0", "v0.17.1", "v0.18.1" }, bone);
        Assert.AreEqual(Releases.Count, ReleasesWith("LORA").Count());
        string readme = File.ReadAllText(Path.Combine(SharedData.RepositoryRoot, "README.md"));
        StringAssert.Contains(readme, "| `MISS` (default) | 0.17 and later |");
        StringAssert.Contains(readme, "| `BONE` (legacy) | 0.14 to 0.18 |");
    }
}
