using Microsoft.ML.Bone.Tokenization;

namespace Microsoft.ML.Bone.Tests.Tokenization;

[TestClass]
public sealed class LlamaTokenizerTests
{
    private static LlamaSentencePieceTokenizer Tokenizer() => LlamaSentencePieceTokenizer.Load(SharedData.Path("tokenizers", "llama2"));

    [TestMethod]
    [DataRow("Hello world", new[] { 1, 15043, 3186 })]
    [DataRow("Hello world!", new[] { 1, 15043, 3186, 29991 })]
    [DataRow(" Hello", new[] { 1, 29871, 15043 })]
    [DataRow("hello", new[] { 1, 22172 })]
    [DataRow("", new[] { 1 })]
    [DataRow(" ", new[] { 1, 259 })]
    public void MatchesPublishedIds(string text, int[] expected) => CollectionAssert.AreEqual(expected, Tokenizer().Encode(text, addBos: true));

    [TestMethod]
    public void DecodesBack()
    {
        var t = Tokenizer();
        Assert.AreEqual((1, 2, 0), (t.BosId, t.EosId, t.PadId));
        string text = "Natalia sold clips to 48 of her friends in April. #### 72 ✓";
        Assert.AreEqual(text, t.Decode(t.Encode(text, addBos: true)));
    }
}
