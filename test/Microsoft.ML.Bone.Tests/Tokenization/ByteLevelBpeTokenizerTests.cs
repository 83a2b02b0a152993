namespace Microsoft.ML.Bone.Tests.Tokenization;

/// <summary>The vocab.json + merges.txt tokenizer of GPT-2-style causal LMs (Qwen2), checked on GPT-2's own files.</summary>
[TestClass]
public sealed class ByteLevelBpeTokenizerTests
{
    internal static TokenizerFiles Gpt2Files(string? tokenizerConfig = null)
    {
        var files = new Dictionary<string, byte[]>
        {
            ["vocab.json"] = File.ReadAllBytes(SharedData.Path("tokenizers", "gpt2", "encoder.json")),
            ["merges.txt"] = File.ReadAllBytes(SharedData.Path("tokenizers", "gpt2", "vocab.bpe")),
        };
        if (tokenizerConfig is not null) files["tokenizer_config.json"] = System.Text.Encoding.UTF8.GetBytes(tokenizerConfig);
        return new TokenizerFiles(files, "gpt2");
    }

    private const string AddedTokens = """{"added_tokens_decoder":{"50256":{"content":"<|endoftext|>","special":true},"50257":{"content":"<|im_start|>","special":true}}}""";

    [TestMethod]
    [DataRow("Hello world", new[] { 15496, 995 })]
    [DataRow(" Hello world", new[] { 18435, 995 })]
    [DataRow("<|im_start|>user", new[] { 50257, 7220 })]
    public void MatchesGpt2Ids(string text, int[] expected)
    {
        var tokenizer = CausalTokenizers.Load(Gpt2Files(AddedTokens), bos: null, eos: 50256);
        CollectionAssert.AreEqual(expected, tokenizer.Encode(text, addBos: true), "no BOS when the model has none");
    }

    [TestMethod]
    public void DecodesBackAndDropsSpecialTokens()
    {
        var tokenizer = CausalTokenizers.Load(Gpt2Files(AddedTokens), bos: null, eos: 50256);
        Assert.AreEqual((null, 50256, 50256), (tokenizer.BosId, tokenizer.EosId, tokenizer.PadId));
        string text = "Natalia sold clips to 48 of her friends in April. #### 72 ✓";
        Assert.AreEqual(text, tokenizer.Decode([50257, .. tokenizer.Encode(text, addBos: false), 50256]));
    }

    [TestMethod]
    public void BadFilesNameTheFile()
    {
        var files = new TokenizerFiles(new Dictionary<string, byte[]> { ["vocab.json"] = "[1, 2]"u8.ToArray(), ["merges.txt"] = []}, "somewhere");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => CausalTokenizers.Load(files, null, 0)).Message, Path.Combine("somewhere", "vocab.json"));
        string empty = Directory.CreateTempSubdirectory("bone-tok-").FullName;
        try { StringAssert.Contains(Assert.ThrowsExactly<FileNotFoundException>(() => CausalTokenizers.Locate(empty, null)).Message, "tokenizer.model"); }
        finally { Directory.Delete(empty); }
    }
}
