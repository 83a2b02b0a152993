using System.Buffers;
using System.Diagnostics;
using System.Text;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Bone.Tests.Tokenization;

/// <summary>The RWKV World tokenizer, checked on the real rwkv_vocab_v20230424.txt and on small vocabularies written here.</summary>
[TestClass]
public sealed class RwkvWorldTokenizerTests
{
    private static readonly Lazy<RwkvWorldTokenizer> World = new(() => RwkvWorldTokenizer.Load(VocabPath));

    private static string VocabPath => SharedData.Path("tokenizers", "rwkv", RwkvWorldTokenizer.FileName);

    // Texts of many scripts and of characters that need 1, 2, 3 and 4 UTF-8 bytes.
    private static readonly string[] Samples =
    [
        "", " ", "\n\n", "Hello world", "User: hi\n\nAssistant:", "我们发现", "Ünïcödé façade — «quotes» … ½",
        "Привет, мир! Γειά σου κόσμε. שלום עולם. مرحبا بالعالم.", "日本語のテキストと한국어 텍스트", "emoji 😀🎉👍🏽 and 𠀀𪚥",
        "tabs\tand\r\nnewlines\u0000nul\u007f", "    def f(x):\n        return x ** 2  # comment", "e\u0301 combining",
    ];

    [TestMethod]
    [DataRow("Hello world", new[] { 33155, 40213 })]
    [DataRow("\nElon Musk has", new[] { 11, 994, 2098, 29435, 21800 })]
    [DataRow("User: hi\n\nAssistant:", new[] { 24281, 59, 4571, 261, 5585, 41693, 59 })]
    [DataRow("我们发现", new[] { 12605, 10402, 10997, 14446 })]
    [DataRow("  x", new[] { 267, 121 })]
    public void MatchesRwkvIds(string text, int[] expected)
    {
        var world = World.Value;
        CollectionAssert.AreEqual(expected, world.Encode(text, addBos: true), "RWKV adds no BOS");
        CollectionAssert.AreEqual(expected, world.EncodeToIds(text).ToArray());
        CollectionAssert.AreEqual(expected, world.EncodeBytes(Encoding.UTF8.GetBytes(text)));
        Assert.AreEqual(text, world.Decode(expected));
    }

    [TestMethod]
    public void HasRwkvsSpecialIdsAndSingleByteTokens()
    {
        var world = World.Value;
        Assert.AreEqual((null, 0, 0), (world.BosId, world.EosId, world.PadId));
        Assert.AreEqual((65529, 65530, 128), (world.TokenCount, world.IdLimit, world.MaxTokenLength));
        for (int b = 0; b < 256; b++)
        {
            CollectionAssert.AreEqual(new[] { (byte)b }, world.DecodeBytes([b + 1]), $"id {b + 1} is byte 0x{b:X2}");
            CollectionAssert.AreEqual(new[] { b + 1 }, world.EncodeBytes([(byte)b]));
        }
        Assert.AreEqual(128, world.DecodeBytes([65529]).Length);
    }

    [TestMethod]
    public void DecodeSkipsEndOfTextAndUnknownIds()
    {
        var world = World.Value;
        Assert.AreEqual("Hello world", world.Decode([0, 33155, 0, 40213, 65530, 65535, -1, 0]));
        Assert.AreEqual(0, world.DecodeBytes([0, 65531]).Length);
        Assert.AreEqual("", world.Decode([]));
    }

    [TestMethod]
    public void TextRoundTrips()
    {
        var world = World.Value;
        foreach (string text in Samples) Assert.AreEqual(text, world.Decode(world.Encode(text, addBos: false)), text);
        var random = new Random(1234);
        for (int trial = 0; trial < 200; trial++)
        {
            string text = RandomText(random, random.Next(0, 200));
            int[] ids = world.Encode(text, addBos: false);
            Assert.AreEqual(text, world.Decode(ids));
            CollectionAssert.AreEqual(Encoding.UTF8.GetBytes(text), world.DecodeBytes(ids));
            Assert.IsTrue(ids.All(id => id is >= 1 and < 65530));
        }
    }

    [TestMethod]
    public void ArbitraryBytesRoundTrip()
    {
        var world = World.Value;
        var random = new Random(99);
        for (int trial = 0; trial < 300; trial++)
        {
            var bytes = new byte[random.Next(0, 300)];
            random.NextBytes(bytes);
            // Half the arrays mix in text so that long tokens are met, not only single bytes.
            if (trial % 2 == 0) bytes = [.. bytes.Take(bytes.Length / 2), .. Encoding.UTF8.GetBytes(Samples[trial % Samples.Length]), .. bytes.Skip(bytes.Length / 2)];
            int[] ids = world.EncodeBytes(bytes);
            CollectionAssert.AreEqual(bytes, world.DecodeBytes(ids));
            Assert.AreEqual(Encoding.UTF8.GetString(bytes), world.Decode(ids), "invalid UTF-8 decodes as .NET's replacing decoder does");
        }
    }

    [TestMethod]
    public void InvalidUtf8DecodesToReplacementCharacters()
    {
        var world = World.Value;
        Assert.AreEqual("\uFFFD", world.Decode([0xFF + 1]), "a lone 0xFF");
        Assert.AreEqual("A\uFFFDB", world.Decode(world.EncodeBytes([0x41, 0xE6, 0x88, 0x42])), "a truncated three-byte sequence");
        Assert.AreEqual("\uFFFD\uFFFD", world.Decode(world.EncodeBytes([0xC0, 0xAF])), "an overlong encoding");
        Assert.AreEqual("\uFFFD", world.Decode(world.EncodeBytes([0xED, 0xA0, 0x80]))[..1], "an encoded surrogate");
        // A character split over two ids decodes whole when both are there.
        byte[] wo = Encoding.UTF8.GetBytes("我");
        Assert.AreEqual("我", world.Decode([wo[0] + 1, wo[1] + 1, wo[2] + 1]));
    }

    [TestMethod]
    public void EncodesAMegabyteQuickly()
    {
        var world = World.Value;
        var text = new StringBuilder();
        var random = new Random(7);
        while (text.Length < 1 << 20) text.Append(Samples[random.Next(Samples.Length)]).Append(' ').Append(RandomText(random, 50)).Append('\n');
        string big = text.ToString();
        world.Encode("warm up", addBos: false);
        var watch = Stopwatch.StartNew();
        int[] ids = world.Encode(big, addBos: false);
        watch.Stop();
        Assert.IsLessThan(1000, watch.ElapsedMilliseconds, $"encoding {big.Length} chars took {watch.ElapsedMilliseconds} ms");
        Assert.AreEqual(big, world.Decode(ids));
    }

    [TestMethod]
    public void TokenizerApiEncodesCountsAndDecodes()
    {
        Tokenizer tokenizer = World.Value;
        CollectionAssert.AreEqual(new[] { 33155, 40213 }, tokenizer.EncodeToIds("Hello world").ToArray());
        CollectionAssert.AreEqual(new[] { 33155, 40213 }, tokenizer.EncodeToIds("Hello world".AsSpan()).ToArray());
        Assert.AreEqual(2, tokenizer.CountTokens("Hello world"));
        Assert.AreEqual(7, tokenizer.CountTokens("User: hi\n\nAssistant:".AsSpan()));
        Assert.AreEqual("Hello world", tokenizer.Decode([33155, 40213]));
        Assert.IsNull(tokenizer.Normalizer);
        Assert.IsNull(tokenizer.PreTokenizer);

        var tokens = tokenizer.EncodeToTokens("Hello world", out string? normalized);
        Assert.IsNull(normalized);
        CollectionAssert.AreEqual(new[] { "Hello", " world" }, tokens.Select(t => t.Value).ToArray());
        CollectionAssert.AreEqual(new[] { new Range(0, 5), new Range(5, 11) }, tokens.Select(t => t.Offset).ToArray());
        CollectionAssert.AreEqual(new[] { 33155, 40213 }, tokens.Select(t => t.Id).ToArray());

        var chinese = tokenizer.EncodeToTokens("我们发现", out _);
        CollectionAssert.AreEqual(new[] { "我们", "发现" }.SelectMany(s => s.Select(c => c.ToString())).ToArray(), chinese.Select(t => t.Value).ToArray());

        IReadOnlyList<int> first = tokenizer.EncodeToIds("Hello world", maxTokenCount: 1, out _, out int consumed);
        CollectionAssert.AreEqual(new[] { 33155 }, first.ToArray());
        Assert.AreEqual(5, consumed);
        Assert.AreEqual(5, tokenizer.GetIndexByTokenCount("Hello world", 1, out _, out int count));
        Assert.AreEqual(1, count);
        Assert.AreEqual(5, tokenizer.GetIndexByTokenCountFromEnd("Hello world", 1, out _, out count));
        Assert.AreEqual(1, count);
        Assert.AreEqual(11, tokenizer.GetIndexByTokenCount("Hello world", 5, out _, out count));
        Assert.AreEqual(2, count);
        Assert.AreEqual(0, tokenizer.GetIndexByTokenCountFromEnd("Hello world", 5, out _, out count));
        Assert.AreEqual(2, count);
    }

    [TestMethod]
    public void TokensInsideACharacterReportItsSpanAndTheirBytes()
    {
        Tokenizer tokenizer = World.Value;
        // A character absent from the vocabulary falls back to byte tokens, each of which is part of one character.
        string text = "a\U0002A6A5b";
        var tokens = tokenizer.EncodeToTokens(text, out _);
        var inside = tokens.Where(t => t.Value.StartsWith("<0x", StringComparison.Ordinal)).ToList();
        Assert.IsGreaterThan(1, inside.Count, string.Join(" | ", tokens.Select(t => $"{t.Id} {t.Value} {t.Offset}")));
        Assert.IsTrue(inside.All(t => t.Offset.Equals(new Range(1, 3))), "the whole surrogate pair");
        Assert.AreEqual(string.Concat(Encoding.UTF8.GetBytes("\U0002A6A5").Select(b => $"<0x{b:X2}>")), string.Concat(inside.Select(t => t.Value)));

        // A token limit never stops inside the character: the ids always decode to the characters consumed.
        IReadOnlyList<int> ids = tokenizer.EncodeToIds(text, maxTokenCount: 2, out _, out int consumed);
        Assert.AreEqual(1, consumed);
        Assert.AreEqual("a", tokenizer.Decode(ids));
    }

    [TestMethod]
    public void TokenLimitsCutAtCharacterBoundariesFromEitherEnd()
    {
        Tokenizer tokenizer = World.Value;
        var random = new Random(5);
        foreach (string text in Samples.Concat(Enumerable.Range(0, 20).Select(_ => RandomText(random, 40))))
        {
            int total = tokenizer.CountTokens(text);
            for (int max = 1; max <= total + 1; max++)
            {
                IReadOnlyList<int> ids = tokenizer.EncodeToIds(text, max, out _, out int consumed);
                Assert.IsLessThanOrEqualTo(max, ids.Count);
                Assert.AreEqual(text[..consumed], tokenizer.Decode(ids), $"{text} / {max}");
                CollectionAssert.AreEqual(tokenizer.EncodeToIds(text[..consumed]).ToArray(), ids.ToArray());
                Assert.AreEqual(consumed, tokenizer.GetIndexByTokenCount(text, max, out _, out int count));
                Assert.AreEqual(ids.Count, count);
                Assert.AreEqual(consumed, tokenizer.EncodeToTokens(text, out _).TakeWhile((_, i) => i < ids.Count).LastOrDefault().Offset.End.Value);

                int start = tokenizer.GetIndexByTokenCountFromEnd(text, max, out _, out int tail);
                Assert.IsLessThanOrEqualTo(max, tail);
                Assert.AreEqual(tail, tokenizer.CountTokens(text[start..]), $"{text} / {max} from the end");
                Assert.IsFalse(start > 0 && start < text.Length && char.IsLowSurrogate(text[start]), "never inside a surrogate pair");
            }
        }
    }

    [TestMethod]
    public void DecodesIntoASpanWithoutSplittingCharacters()
    {
        Tokenizer tokenizer = World.Value;
        foreach (string text in Samples)
        {
            // Byte ids split every multi-byte character over several ids.
            int[] ids = [0, .. Encoding.UTF8.GetBytes(text).Select(b => b + 1), 0, .. World.Value.Encode(text, addBos: false)];
            string whole = tokenizer.Decode(ids);
            for (int size = 0; size <= whole.Length; size++)
            {
                char[] destination = new char[size];
                OperationStatus status = tokenizer.Decode(ids, destination, out int idsConsumed, out int written);
                Assert.AreEqual(size == whole.Length ? OperationStatus.Done : OperationStatus.DestinationTooSmall, status, $"{text} / {size}");
                Assert.AreEqual(whole[..written], new string(destination, 0, written));
                Assert.AreEqual(whole[..written], tokenizer.Decode(ids.Take(idsConsumed)));
                if (status == OperationStatus.Done) Assert.AreEqual(ids.Length, idsConsumed);
            }
        }
        Assert.AreEqual(OperationStatus.Done, tokenizer.Decode([0xE6 + 1], new char[1], out int n, out int chars));
        Assert.AreEqual((1, 1), (n, chars), "an unfinished character at the end is one U+FFFD");
    }

    [TestMethod]
    public void ParsesPythonLiteralEscapes()
    {
        (string Literal, byte[] Bytes)[] cases =
        [
            (@"'\n\t\r'", [10, 9, 13]),
            (@"'\\x'", [0x5C, (byte)'x']),
            (@"'it\'s'", Encoding.UTF8.GetBytes("it's")),
            ("\"say \\\"hi\\\"\"", Encoding.UTF8.GetBytes("say \"hi\"")),
            ("\"'q'\"", Encoding.UTF8.GetBytes("'q'")),
            (@"'\u4e2d\u6587'", Encoding.UTF8.GetBytes("中文")),
            (@"'\U0001F600!'", Encoding.UTF8.GetBytes("😀!")),
            (@"'\xe4x'", [0xC3, 0xA4, (byte)'x']),
            (@"b'\xe4\xB8'", [0xE4, 0xB8]),
            (@"b'\x00\xff\\\''", [0, 0xFF, 0x5C, 0x27]),
            (@"'a\0'", [(byte)'a', 0]),
            (@"'\101\102c'", Encoding.UTF8.GetBytes("ABc")),
            (@"'\a\b\f\v'", [7, 8, 12, 11]),
            (@"b'\u00e9'", Encoding.ASCII.GetBytes(@"\u00e9")),
            (@"'\q'", [0x5C, (byte)'q']),
            ("'中文!'", Encoding.UTF8.GetBytes("中文!")),
            ("'😀 '", Encoding.UTF8.GetBytes("😀 ")),
            (@"r'\n'", [0x5C, (byte)'n']),
            (@"B'ab'", Encoding.ASCII.GetBytes("ab")),
            ("'''a'b'''", Encoding.ASCII.GetBytes("a'b")),
            ("'   '", Encoding.ASCII.GetBytes("   ")),
        ];
        using var vocab = new TempVocab(cases.Select(c => $"{c.Literal} {c.Bytes.Length}"));
        var tokenizer = RwkvWorldTokenizer.Load(vocab.Path);
        Assert.AreEqual(256 + cases.Length, tokenizer.TokenCount);
        for (int i = 0; i < cases.Length; i++)
        {
            CollectionAssert.AreEqual(cases[i].Bytes, tokenizer.DecodeBytes([257 + i]), cases[i].Literal);
            CollectionAssert.AreEqual(new[] { 257 + i }, tokenizer.EncodeBytes(cases[i].Bytes), "the longest match is the whole token");
        }
        var fromBytes = RwkvWorldTokenizer.Load(File.ReadAllBytes(vocab.Path), "in memory");
        CollectionAssert.AreEqual(tokenizer.Encode("it's 中文!", false), fromBytes.Encode("it's 中文!", false));
    }

    [TestMethod]
    [DataRow("'ab' 3", "decodes to 2 bytes, but its length field says 3")]
    [DataRow(@"'\u4e2d' 1", "decodes to 3 bytes, but its length field says 1")]
    [DataRow(@"'\ud800x' 4", "surrogate")]
    [DataRow("b'é' 2", "ASCII")]
    [DataRow("'abc 3", "closing quote")]
    [DataRow("'a'b' 3", "unescaped quote")]
    [DataRow(@"'\x4' 1", @"\x needs two hex digits")]
    [DataRow("x'ab' 2", "unknown string prefix")]
    [DataRow("12 2", "expected a quoted string")]
    [DataRow("'' 0", "empty token")]
    [DataRow("'ab' two", "not a byte length")]
    [DataRow("'ab'", "not \"<id> <literal> <byte length>\"")]
    public void CorruptLinesNameTheFileAndLine(string line, string expected)
    {
        using var vocab = new TempVocab([line]);
        string message = Assert.ThrowsExactly<InvalidDataException>(() => RwkvWorldTokenizer.Load(vocab.Path)).Message;
        StringAssert.Contains(message, $"{vocab.Path}: line 257 ");
        StringAssert.Contains(message, expected);
    }

    [TestMethod]
    public void InconsistentVocabulariesAreRefused()
    {
        string Message(IEnumerable<string> lines, string source = "vocab")
        {
            byte[] content = Encoding.UTF8.GetBytes(string.Join('\n', lines));
            return Assert.ThrowsExactly<InvalidDataException>(() => RwkvWorldTokenizer.Load(content, source)).Message;
        }
        var bytes = TempVocab.SingleByteLines().ToList();
        StringAssert.Contains(Message([.. bytes, "256 'zz' 2"]), "vocab: line 257 gives id 256 again (first on line 256)");
        StringAssert.Contains(Message([.. bytes, "300 'a' 1"]), "vocab: line 257 repeats the bytes of token 98 (line 98)");
        StringAssert.Contains(Message([.. bytes, "0 'zz' 2"]), "reserved for end of text");
        StringAssert.Contains(Message([.. bytes, "x1 'zz' 2"]), "not a token id");
        StringAssert.Contains(Message(bytes.Where((_, i) => i != 0x41)), "no token for the single byte 0x41");
        StringAssert.Contains(Message([]), "vocab: no tokens");
        byte[] notUtf8 = [.. Encoding.UTF8.GetBytes(string.Join('\n', bytes) + "\n257 '"), 0xFF, .. "' 1"u8];
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => RwkvWorldTokenizer.Load(notUtf8, "vocab")).Message, "vocab: line 257 is not valid UTF-8 text");
        StringAssert.Contains(Assert.ThrowsExactly<FileNotFoundException>(() => RwkvWorldTokenizer.Load(Path.Combine(Path.GetTempPath(), "no-such-rwkv-vocab.txt"))).Message, RwkvWorldTokenizer.FileName);
    }

    [TestMethod]
    public void BlankLinesAndWindowsLineEndsAreRead()
    {
        string text = string.Join("\r\n", TempVocab.SingleByteLines()) + "\r\n\r\n257 'hi' 2\r\n";
        var tokenizer = RwkvWorldTokenizer.Load(Encoding.UTF8.GetBytes(text), "crlf");
        CollectionAssert.AreEqual(new[] { 257, 257 }, tokenizer.Encode("hihi", false));
        Assert.AreEqual(258, tokenizer.IdLimit);
    }

    [TestMethod]
    public void CausalTokenizersFindTheVocabularyInAFolderOrByPath()
    {
        string dir = Directory.CreateTempSubdirectory("bone-rwkv-").FullName;
        try
        {
            File.Copy(VocabPath, Path.Combine(dir, RwkvWorldTokenizer.FileName));
            File.WriteAllText(Path.Combine(dir, "model.pth"), "");
            TokenizerFiles files = CausalTokenizers.Locate(Path.Combine(dir, "model.pth"), null);
            Assert.IsTrue(files.Has(RwkvWorldTokenizer.FileName));
            ICausalTokenizer tokenizer = CausalTokenizers.Load(files, bos: 0, eos: 0);
            Assert.IsInstanceOfType<RwkvWorldTokenizer>(tokenizer);
            Assert.AreEqual((null, 0, 0), (tokenizer.BosId, tokenizer.EosId, tokenizer.PadId));
            CollectionAssert.AreEqual(new[] { 33155, 40213 }, tokenizer.Encode("Hello world", addBos: true));

            // Pointed at directly, any rwkv_vocab_*.txt is kept under the name Load knows (as a model zip stores it).
            string renamed = Path.Combine(dir, "rwkv_vocab_custom.txt");
            File.Move(Path.Combine(dir, RwkvWorldTokenizer.FileName), renamed);
            files = CausalTokenizers.Locate(Path.Combine(dir, "model.pth"), renamed);
            CollectionAssert.AreEqual(new[] { RwkvWorldTokenizer.FileName }, files.Files.Keys.ToArray());
            Assert.IsInstanceOfType<RwkvWorldTokenizer>(CausalTokenizers.Load(new TokenizerFiles(files.Files, "model zip"), null, 0));

            string message = Assert.ThrowsExactly<FileNotFoundException>(() => CausalTokenizers.Locate(Path.Combine(dir, "model.pth"), null)).Message;
            StringAssert.Contains(message, RwkvWorldTokenizer.FileName);
            StringAssert.Contains(message, ByteTokenizer.FileName);
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [TestMethod]
    public void VocabularyErrorsThroughCausalTokenizersNameTheFile()
    {
        var files = new TokenizerFiles(new Dictionary<string, byte[]> { [RwkvWorldTokenizer.FileName] = "1 'a' 2\n"u8.ToArray() }, "model zip");
        StringAssert.Contains(Assert.ThrowsExactly<InvalidDataException>(() => CausalTokenizers.Load(files, null, 0)).Message,
            $"{Path.Combine("model zip", RwkvWorldTokenizer.FileName)}: line 1 decodes to 1 bytes, but its length field says 2");
    }

    // Random code points of every UTF-8 length (no lone surrogates, which UTF-8 cannot hold).
    internal static string RandomText(Random random, int length)
    {
        var text = new StringBuilder(length * 2);
        for (int i = 0; i < length; i++)
        {
            int cp = random.Next(6) switch
            {
                0 => random.Next(0, 0x80),
                1 => random.Next(0x20, 0x7F),
                2 => random.Next(0x80, 0x800),
                3 => random.Next(0x4E00, 0x9FFF),
                4 => random.Next(0x800, 0xD800),
                _ => random.Next(0x10000, 0x110000),
            };
            text.Append(char.ConvertFromUtf32(cp));
        }
        return text.ToString();
    }

    /// <summary>A vocabulary file in a temporary folder: the 256 single bytes, then the given lines as ids 257, 258, …</summary>
    private sealed class TempVocab : IDisposable
    {
        private readonly string _dir = Directory.CreateTempSubdirectory("bone-rwkv-vocab-").FullName;

        public TempVocab(IEnumerable<string> lines)
        {
            Path = System.IO.Path.Combine(_dir, RwkvWorldTokenizer.FileName);
            File.WriteAllLines(Path, [.. SingleByteLines(), .. lines.Select((l, i) => $"{257 + i} {l}")], new UTF8Encoding(false));
        }

        public string Path { get; }

        public static IEnumerable<string> SingleByteLines() =>
            Enumerable.Range(0, 256).Select(b => b is >= 0x20 and < 0x7F and not ('\'' or '\\') ? $"{b + 1} '{(char)b}' 1" : $"{b + 1} b'\\x{b:x2}' 1");

        public void Dispose() => Directory.Delete(_dir, recursive: true);
    }
}
