using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Bone.Tokenization;

/// <summary>
/// RoBERTa's byte-level BPE (GPT-2 pre-tokenisation over <c>vocab.json</c> + <c>merges.txt</c>, no prefix space)
/// with its special tokens: single sequences are <c>&lt;s&gt; A &lt;/s&gt;</c>, pairs <c>&lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;</c>.
/// </summary>
public sealed class RobertaTokenizer : ISequenceTokenizer
{
    private readonly Tokenizer _bpe;

    private RobertaTokenizer(Tokenizer bpe, int bos, int eos, int pad, int unk, int idLimit)
    {
        _bpe = bpe;
        IdLimit = idLimit;
        BosId = bos;
        EosId = eos;
        PadId = pad;
        UnkId = unk;
    }

    /// <summary><c>&lt;s&gt;</c>.</summary>
    public int BosId { get; }

    /// <summary><c>&lt;/s&gt;</c>.</summary>
    public int EosId { get; }

    /// <inheritdoc/>
    public int PadId { get; }

    /// <summary><c>&lt;unk&gt;</c>.</summary>
    public int UnkId { get; }

    /// <summary>The files this tokenizer is made of.</summary>
    public static readonly IReadOnlyList<string> FileNames = ["vocab.json", "merges.txt"];

    /// <summary>Loads <c>vocab.json</c> and <c>merges.txt</c> from a model directory.</summary>
    public static RobertaTokenizer FromDirectory(string directory)
    {
        foreach (string name in FileNames)
            if (!File.Exists(Path.Combine(directory, name))) throw new FileNotFoundException($"{Path.Combine(directory, name)}: not found; RoBERTa needs vocab.json and merges.txt next to its weights.");
        return Load(TokenizerFiles.FromDirectory(directory, FileNames));
    }

    /// <summary>Builds the tokenizer from <c>vocab.json</c> and <c>merges.txt</c> held in <paramref name="files"/>.</summary>
    public static RobertaTokenizer Load(TokenizerFiles files)
    {
        string vocabPath = files.Describe("vocab.json");
        Dictionary<string, int> vocab;
        try { vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(files.Bytes("vocab.json")) ?? throw new InvalidDataException($"{vocabPath}: empty vocabulary."); }
        catch (JsonException e) { throw new InvalidDataException($"{vocabPath}: not a JSON object of token → id ({e.Message})."); }
        int Special(string token) => vocab.TryGetValue(token, out int id) ? id : throw new InvalidDataException($"{vocabPath}: the special token {token} is missing.");
        var merges = System.Text.Encoding.UTF8.GetString(files.Bytes("merges.txt")).Split('\n')
            .Select(l => l.TrimEnd('\r')).Where(l => l.Length > 0 && !l.StartsWith("#version", StringComparison.Ordinal)).ToList();

        Tokenizer bpe;
        try
        {
            // A plain byte-level BPE over exactly these files. (CodeGenTokenizer would add CodeGen's own whitespace and
            // <|endoftext|> tokens, whose ids do not exist in RoBERTa's vocabulary.)
            bpe = BpeTokenizer.Create(new BpeOptions(vocab) { Merges = merges, ByteLevel = true, PreTokenizer = RobertaPreTokenizer.Instance });
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException or JsonException)
        {
            throw new InvalidDataException($"{files.Source}: vocab.json / merges.txt could not be read as a byte-level BPE ({e.Message}).", e);
        }
        return new RobertaTokenizer(bpe, Special("<s>"), Special("</s>"), Special("<pad>"), Special("<unk>"), vocab.Values.Max() + 1);
    }

    /// <summary>One more than the largest id the tokenizer can produce.</summary>
    public int IdLimit { get; }

    /// <summary>BPE ids of <paramref name="text"/> without special tokens.</summary>
    public IReadOnlyList<int> EncodeText(string text) => _bpe.EncodeToIds(text, considerPreTokenization: true, considerNormalization: true);

    /// <inheritdoc/>
    public int[] Encode(string first, string? second, int maxLength) => EncodeCounting(first, second, maxLength).Ids;

    /// <inheritdoc/>
    public (int[] Ids, int FullLength) EncodeCounting(string first, string? second, int maxLength) =>
        second is null ? CountingSingle(first, maxLength) : CountingPair(first, second, maxLength);

    /// <summary><c>&lt;s&gt; A &lt;/s&gt;</c>, with A truncated so the total is at most <paramref name="maxLength"/>.</summary>
    public int[] EncodeSingle(string text, int maxLength) => CountingSingle(text, maxLength).Ids;

    /// <summary>
    /// <c>&lt;s&gt; A &lt;/s&gt;&lt;/s&gt; B &lt;/s&gt;</c>, truncated longest-first: one token at a time comes off the
    /// end of the longer of A and B (B on ties) until the total fits, as transformers' <c>truncation=True</c>.
    /// </summary>
    public int[] EncodePair(string first, string second, int maxLength) => CountingPair(first, second, maxLength).Ids;

    private (int[] Ids, int FullLength) CountingSingle(string text, int maxLength)
    {
        if (maxLength < 3) throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, "must leave room for <s>, one token and </s>");
        IReadOnlyList<int> a = EncodeText(text);
        int keep = Math.Min(a.Count, maxLength - 2);
        return ([BosId, .. a.Take(keep), EosId], a.Count + 2);
    }

    private (int[] Ids, int FullLength) CountingPair(string first, string second, int maxLength)
    {
        if (maxLength < 6) throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, "must leave room for four special tokens and one token of each text");
        IReadOnlyList<int> a = EncodeText(first), b = EncodeText(second);
        int keepA = a.Count, keepB = b.Count, budget = maxLength - 4;
        while (keepA + keepB > budget)
        {
            if (keepA > keepB) keepA--;
            else keepB--;
        }
        return ([BosId, .. a.Take(keepA), EosId, EosId, .. b.Take(keepB), EosId], a.Count + b.Count + 4);
    }
}
