using Microsoft.ML.Bone.Tokenization;

namespace Microsoft.ML.Bone.Tests.Tokenization;

[TestClass]
public sealed class RobertaTokenizerTests
{
    private static RobertaTokenizer Tokenizer() => RobertaTokenizer.FromDirectory(SharedData.Path("tokenizers", "roberta"));

    [TestMethod]
    [DataRow("Hello world!", new[] { 0, 31414, 232, 328, 2 })]
    [DataRow("Hello world! cécé herlolip", new[] { 0, 31414, 232, 328, 740, 1140, 12695, 69, 46078, 1588, 2 })]
    [DataRow("Hello world", new[] { 0, 31414, 232, 2 })]
    [DataRow(" Hello world", new[] { 0, 20920, 232, 2 })]
    [DataRow("world", new[] { 0, 8331, 2 })]
    public void MatchesPublishedIds(string text, int[] expected) =>
        CollectionAssert.AreEqual(expected, Tokenizer().EncodeSingle(text, 512));

    [TestMethod]
    public void PairsAndTruncation()
    {
        var t = Tokenizer();
        // "Hello world!" = 31414 232 328; "world" = 8331.
        CollectionAssert.AreEqual(new[] { 0, 31414, 232, 328, 2, 2, 8331, 2 }, t.EncodePair("Hello world!", "world", 512));
        CollectionAssert.AreEqual(new[] { 0, 31414, 232, 2 }, t.EncodeSingle("Hello world!", 4));
        // Budget 8 - 4 specials = 4 content tokens: A (3) vs B (3): B loses first on ties, then A, then B.
        CollectionAssert.AreEqual(new[] { 0, 31414, 232, 2, 2, 31414, 232, 2 }, t.EncodePair("Hello world!", "Hello world!", 8));
        CollectionAssert.AreEqual(new[] { 0, 31414, 232, 328, 2, 2, 31414, 232, 2 }, t.EncodePair("Hello world!", "Hello world!", 9));
        Assert.AreEqual(1, t.PadId);
    }

    [TestMethod]
    public void MissingFilesAreNamed()
    {
        string dir = Directory.CreateTempSubdirectory("bone-tok-").FullName;
        try
        {
            StringAssert.Contains(Assert.ThrowsExactly<FileNotFoundException>(() => RobertaTokenizer.FromDirectory(dir)).Message, "vocab.json");
            File.WriteAllText(Path.Combine(dir, "vocab.json"), "[1,2]");
            File.WriteAllText(Path.Combine(dir, "merges.txt"), "#version: 0.2\n");
            StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => RobertaTokenizer.FromDirectory(dir)).Message, "vocab.json");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
