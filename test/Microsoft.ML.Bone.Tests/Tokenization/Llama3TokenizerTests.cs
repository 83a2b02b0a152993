using System.Text;
using Microsoft.ML.Bone.Tokenization;

namespace Microsoft.ML.Bone.Tests.Tokenization;

[TestClass]
public sealed class Llama3TokenizerTests
{
    [TestMethod]
    public void MergesByRankAndPlacesSpecialsAfterTheRankedTokens()
    {
        string dir = Directory.CreateTempSubdirectory("bone-tiktoken-").FullName;
        try
        {
            // A tiny rank file: every byte at its own rank, then "ll" 256, "He" 257, "llo" 258, "Hello" 259, " w" 260.
            var tokens = Enumerable.Range(0, 256).Select(b => new[] { (byte)b }).Concat(new[] { "ll", "He", "llo", "Hello", " w" }.Select(Encoding.UTF8.GetBytes)).ToList();
            string path = Path.Combine(dir, "tokenizer.model");
            File.WriteAllLines(path, tokens.Select((t, rank) => $"{Convert.ToBase64String(t)} {rank}"));
            Assert.IsTrue(Llama3TiktokenTokenizer.IsTiktokenFile(path));
            Assert.IsFalse(Llama3TiktokenTokenizer.IsTiktokenFile(SharedData.Path("tokenizers", "llama2", "tokenizer.model")));

            var t = Llama3TiktokenTokenizer.Load(path);
            Assert.AreEqual((261, 262), (t.BosId, t.EosId));
            // "Hello" merges ll → He → llo → Hello (lowest rank first); " world" becomes " w" + bytes.
            CollectionAssert.AreEqual(new[] { 261, 259, 260, 'o', 'r', 'l', 'd' }, t.Encode("Hello world", addBos: true));
            Assert.AreEqual("Hello world", t.Decode(t.Encode("Hello world", addBos: true)));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
