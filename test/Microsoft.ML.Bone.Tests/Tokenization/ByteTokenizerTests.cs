using System.Buffers;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Bone.Tests.Tokenization;

/// <summary>The one-token-per-byte tokenizer of byte-level models, in UTF-8 and UTF-16LE.</summary>
[TestClass]
public sealed class ByteTokenizerTests
{
    private static readonly int[] OnceUponATime = [79, 0, 110, 0, 99, 0, 101, 0, 32, 0, 117, 0, 112, 0, 111, 0, 110, 0, 32, 0, 97, 0, 32, 0, 116, 0, 105, 0, 109, 0, 101, 0, 44, 0];

    [TestMethod]
    public void Utf16LEEncodesTwoBytesPerCodeUnit()
    {
        var tokenizer = new ByteTokenizer(ByteTokenizerEncoding.Utf16LE);
        Assert.AreEqual((ByteTokenizerEncoding.Utf16LE, (int?)null, 0, 0, 256), (tokenizer.TextEncoding, tokenizer.BosId, tokenizer.EosId, tokenizer.PadId, tokenizer.IdLimit));
        CollectionAssert.AreEqual(OnceUponATime, tokenizer.Encode("Once upon a time,", addBos: true));
        CollectionAssert.AreEqual(OnceUponATime, tokenizer.EncodeToIds("Once upon a time,").ToArray());
        Assert.AreEqual(34, tokenizer.CountTokens("Once upon a time,"));
        Assert.AreEqual("Once upon a time,", tokenizer.Decode(OnceUponATime));
        CollectionAssert.AreEqual(new[] { 0x3D, 0xD8, 0x00, 0xDE }, tokenizer.Encode("😀", false));
    }

    [TestMethod]
    public void Utf16LEDecodesAnyIdsWithoutThrowing()
    {
        var tokenizer = new ByteTokenizer(ByteTokenizerEncoding.Utf16LE);
        // Ids a model generated one byte out of step: every pair is a (CJK) code unit.
        int[] golden = [0, 111, 0, 116, 0, 104, 0, 101];
        Assert.AreEqual("\u6F00\u7400\u6800\u6500", tokenizer.Decode(golden));
        Assert.AreEqual("\uFFFD", tokenizer.Decode([79]), "an odd trailing byte");
        Assert.AreEqual("O\uFFFD", tokenizer.Decode([79, 0, 110]));
        Assert.AreEqual("\uFFFDA", tokenizer.Decode([0x00, 0xD8, 0x41, 0x00]), "a lone high surrogate");
        Assert.AreEqual("A\uFFFD", tokenizer.Decode([0x41, 0x00, 0x00, 0xDC]), "a lone low surrogate");
        Assert.AreEqual("\uFFFD\uFFFD", tokenizer.Decode([0x00, 0xD8, 0x41]), "a high surrogate, then an odd byte");
        Assert.AreEqual("AB", tokenizer.Decode([0x41, 0x00, 256, -1, 0x42, 0x00]), "ids that are not bytes are skipped");

        var dotnet = new UnicodeEncoding(bigEndian: false, byteOrderMark: false, throwOnInvalidBytes: false);
        var random = new Random(3);
        for (int trial = 0; trial < 500; trial++)
        {
            // Mostly surrogate halves and ASCII, where the edge cases are.
            var bytes = new byte[random.Next(0, 40)];
            for (int i = 0; i < bytes.Length; i++) bytes[i] = (byte)(i % 2 == 1 ? random.Next(4) switch { 0 => 0xD8, 1 => 0xDC, 2 => 0, _ => random.Next(256) } : random.Next(256));
            int[] ids = tokenizer.EncodeBytes(bytes);
            CollectionAssert.AreEqual(bytes.Select(b => (int)b).ToArray(), ids);
            CollectionAssert.AreEqual(bytes, tokenizer.DecodeBytes(ids));
            Assert.AreEqual(dotnet.GetString(bytes), tokenizer.Decode(ids), Convert.ToHexString(bytes));
        }
    }

    [TestMethod]
    public void Utf8EncodesEachByte()
    {
        var tokenizer = new ByteTokenizer();
        Assert.AreEqual(ByteTokenizerEncoding.Utf8, tokenizer.TextEncoding);
        CollectionAssert.AreEqual(new[] { 104, 0xC3, 0xA9, 0 }, tokenizer.Encode("hé\0", false));
        Assert.AreEqual("hé\0", tokenizer.Decode([104, 0xC3, 0xA9, 0]), "EOS and padding ids are bytes of the text too");
        Assert.AreEqual("h\uFFFD", tokenizer.Decode([104, 0xC3]));
        var random = new Random(8);
        for (int trial = 0; trial < 100; trial++)
        {
            string text = RwkvWorldTokenizerTests.RandomText(random, random.Next(0, 50));
            Assert.AreEqual(text, tokenizer.Decode(tokenizer.Encode(text, false)));
        }
    }

    [TestMethod]
    public void TokenizerApiReportsOffsetsAndStopsAtCharacters()
    {
        Tokenizer tokenizer = new ByteTokenizer(ByteTokenizerEncoding.Utf16LE);
        var tokens = tokenizer.EncodeToTokens("Hi", out string? normalized);
        Assert.IsNull(normalized);
        CollectionAssert.AreEqual(new[] { "<0x48>", "<0x00>", "<0x69>", "<0x00>" }, tokens.Select(t => t.Value).ToArray());
        CollectionAssert.AreEqual(new[] { new Range(0, 1), new Range(0, 1), new Range(1, 2), new Range(1, 2) }, tokens.Select(t => t.Offset).ToArray());

        CollectionAssert.AreEqual(new[] { 72, 0 }, tokenizer.EncodeToIds("Hi", maxTokenCount: 3, out _, out int consumed).ToArray());
        Assert.AreEqual(1, consumed);
        // A surrogate pair is one character: four bytes or none.
        Assert.AreEqual(0, tokenizer.GetIndexByTokenCount("😀", 3, out _, out int count));
        Assert.AreEqual(0, count);
        Assert.AreEqual(2, tokenizer.GetIndexByTokenCount("😀", 4, out _, out count));
        Assert.AreEqual(1, tokenizer.GetIndexByTokenCountFromEnd("Hi", 3, out _, out count));
        Assert.AreEqual(2, count);

        var destination = new char[1];
        Assert.AreEqual(OperationStatus.DestinationTooSmall, tokenizer.Decode(OnceUponATime, destination, out int ids, out int chars));
        Assert.AreEqual((2, 1, 'O'), (ids, chars, destination[0]));

        Tokenizer utf8 = new ByteTokenizer();
        var bytes = utf8.EncodeToTokens("aé", out _);
        CollectionAssert.AreEqual(new[] { "a", "<0xC3>", "<0xA9>" }, bytes.Select(t => t.Value).ToArray());
        CollectionAssert.AreEqual(new[] { new Range(0, 1), new Range(1, 2), new Range(1, 2) }, bytes.Select(t => t.Offset).ToArray());
    }

    [TestMethod]
    public void JsonFormRoundTrips()
    {
        Assert.AreEqual("""{"type":"bytes","encoding":"utf-16-le","eos_token_id":0,"pad_token_id":0}""", new ByteTokenizer(ByteTokenizerEncoding.Utf16LE).ToJson());
        var custom = new ByteTokenizer(ByteTokenizerEncoding.Utf8, eosId: 3, padId: 4, bosId: 2);
        Assert.AreEqual("""{"type":"bytes","encoding":"utf-8","bos_token_id":2,"eos_token_id":3,"pad_token_id":4}""", custom.ToJson());
        var back = ByteTokenizer.Load(Encoding.UTF8.GetBytes(custom.ToJson()), "json");
        Assert.AreEqual((ByteTokenizerEncoding.Utf8, (int?)2, 3, 4), (back.TextEncoding, back.BosId, back.EosId, back.PadId));
        CollectionAssert.AreEqual(new[] { 2, 72 }, back.Encode("H", addBos: true));

        var defaults = ByteTokenizer.Load("""{"type":"bytes"}"""u8.ToArray(), "json");
        Assert.AreEqual((ByteTokenizerEncoding.Utf8, (int?)null, 0, 0), (defaults.TextEncoding, defaults.BosId, defaults.EosId, defaults.PadId));
        Assert.AreEqual(ByteTokenizerEncoding.Utf16LE, ByteTokenizer.Load("""{"type":"bytes","encoding":"UTF_16LE","bos_token_id":null}"""u8.ToArray(), "json").TextEncoding);
    }

    [TestMethod]
    [DataRow("not json", "t.json: not valid JSON")]
    [DataRow("[1]", "t.json: expected a JSON object")]
    [DataRow("""{"encoding":"utf-8"}""", "t.json: field \"type\" must be \"bytes\"")]
    [DataRow("""{"type":"bpe"}""", "t.json: field \"type\" must be \"bytes\"")]
    [DataRow("""{"type":"bytes","encoding":"latin-1"}""", "t.json: field \"encoding\" must be \"utf-8\" or \"utf-16-le\", not \"latin-1\"")]
    [DataRow("""{"type":"bytes","encoding":8}""", "t.json: field \"encoding\"")]
    [DataRow("""{"type":"bytes","eos_token_id":256}""", "t.json: field \"eos_token_id\" must be a byte value 0…255, not 256")]
    [DataRow("""{"type":"bytes","pad_token_id":null}""", "t.json: field \"pad_token_id\"")]
    [DataRow("""{"type":"bytes","bos_token_id":"0"}""", "t.json: field \"bos_token_id\" must be a byte value 0…255 or null")]
    public void BadJsonNamesTheFileAndField(string json, string expected) =>
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => ByteTokenizer.Load(Encoding.UTF8.GetBytes(json), "t.json")).Message, expected);

    [TestMethod]
    public void SpecialIdsMustBeBytes()
    {
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new ByteTokenizer(eosId: 256));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new ByteTokenizer(padId: -1));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new ByteTokenizer(bosId: 300));
        Assert.ThrowsExactly<ArgumentOutOfRangeException>(() => new ByteTokenizer((ByteTokenizerEncoding)7));
    }

    [TestMethod]
    public void CausalTokenizersFindTheJsonInAFolderOrByPath()
    {
        string dir = Directory.CreateTempSubdirectory("bone-bytes-").FullName;
        try
        {
            string path = Path.Combine(dir, ByteTokenizer.FileName);
            File.WriteAllText(path, new ByteTokenizer(ByteTokenizerEncoding.Utf16LE, eosId: 10).ToJson());
            foreach (string? tokenizerPath in new[] { null, path, dir })
            {
                TokenizerFiles files = CausalTokenizers.Locate(dir, tokenizerPath);
                CollectionAssert.AreEqual(new[] { ByteTokenizer.FileName }, files.Files.Keys.ToArray());
                var tokenizer = (ByteTokenizer)CausalTokenizers.Load(new TokenizerFiles(files.Files, "model zip"), bos: null, eos: 0);
                Assert.AreEqual((ByteTokenizerEncoding.Utf16LE, 10, 0), (tokenizer.TextEncoding, tokenizer.EosId, tokenizer.PadId));
                CollectionAssert.AreEqual(OnceUponATime, tokenizer.Encode("Once upon a time,", addBos: true));
            }
            File.WriteAllText(path, """{"type":"bytes","eos_token_id":-1}""");
            StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => CausalTokenizers.Load(CausalTokenizers.Locate(dir, null), null, 0)).Message,
                $"{Path.Combine(dir, ByteTokenizer.FileName)}: field \"eos_token_id\"");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
