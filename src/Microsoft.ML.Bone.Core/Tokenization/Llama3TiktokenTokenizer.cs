using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Bone.Tokenization;

/// <summary>
/// LLaMA-3's tiktoken-style byte-level BPE: <c>tokenizer.model</c> holds one "base64-token rank" line per token; 256
/// special tokens follow the ranked ones (<c>&lt;|begin_of_text|&gt;</c> = first, <c>&lt;|end_of_text|&gt;</c> = second,
/// <c>&lt;|eot_id|&gt;</c> = tenth), with LLaMA-3's pre-split pattern.
/// </summary>
public sealed class Llama3TiktokenTokenizer : ICausalTokenizer
{
    /// <summary>LLaMA-3's pre-tokenisation pattern.</summary>
    public const string Pattern = @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private readonly TiktokenTokenizer _tokenizer;

    private readonly int _bos;

    private Llama3TiktokenTokenizer(TiktokenTokenizer tokenizer, int bos, int eos)
    {
        _tokenizer = tokenizer;
        _bos = bos;
        EosId = eos;
    }

    /// <inheritdoc/>
    public int? BosId => _bos;
    /// <inheritdoc/>
    public int EosId { get; }
    /// <summary>LLaMA-3 has no pad token; &lt;|end_of_text|&gt; pads (never attended to).</summary>
    public int PadId => EosId;
    /// <inheritdoc/>
    public int IdLimit => _bos + 256;

    /// <summary>True when <paramref name="path"/> looks like a tiktoken rank file rather than a SentencePiece model.</summary>
    public static bool IsTiktokenFile(string path) => IsTiktoken(IO.InputFile.ReadAllBytes(path));

    /// <summary>True when <paramref name="content"/> starts like a tiktoken rank file ("base64 rank" lines) rather than a SentencePiece protobuf.</summary>
    public static bool IsTiktoken(byte[] content)
    {
        int end = Array.IndexOf(content, (byte)'\n');
        string first = System.Text.Encoding.ASCII.GetString(content, 0, end < 0 ? Math.Min(content.Length, 256) : end).TrimEnd('\r');
        return Regex.IsMatch(first, @"^[A-Za-z0-9+/]+=* \d+$");
    }

    /// <summary>Loads a tiktoken rank file.</summary>
    public static Llama3TiktokenTokenizer Load(string path)
    {
        return Load(IO.InputFile.ReadAllBytes(path), path);
    }

    /// <summary>
    /// Loads a tiktoken rank file's <paramref name="content"/> (<paramref name="source"/> names it in errors); the
    /// specials get the ids right after the ranked tokens. Every line is checked first (Microsoft.ML.Tokenizers'
    /// loader does not stop on a malformed file).
    /// </summary>
    public static Llama3TiktokenTokenizer Load(byte[] content, string source)
    {
        string[] lines = System.Text.Encoding.UTF8.GetString(content).Split('\n').Select(l => l.EndsWith('\r') ? l[..^1] : l).ToArray();
        if (lines.Length > 0 && lines[^1].Length == 0) lines = lines[..^1];
        var seen = new HashSet<string>(StringComparer.Ordinal);
        Span<byte> decoded = stackalloc byte[256];
        for (int i = 0; i < lines.Length; i++)
        {
            string[] parts = lines[i].Split(' ');
            if (parts.Length != 2 || parts[0].Length == 0 || parts[0].Length > 340 || !Convert.TryFromBase64String(parts[0], decoded, out int bytes) || bytes == 0
                || !int.TryParse(parts[1], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int rank) || rank != i)
                throw new InvalidDataException($"{source}: line {i + 1} is not \"<base64 token> {i}\" (a tiktoken rank file lists ranks 0, 1, 2, … one per line).");
            if (!seen.Add(Convert.ToBase64String(decoded[..bytes])))
                throw new InvalidDataException($"{source}: line {i + 1} repeats the token of an earlier line.");
        }
        // Microsoft.ML.Tokenizers reads lines as StreamReader does (a lone '\r' ends one, and a blank line makes it
        // loop forever): it gets the checked lines only, one per '\n'.
        content = System.Text.Encoding.UTF8.GetBytes(string.Concat(lines.Select(l => l + "\n")));
        int ranked = lines.Length;
        string[] names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
            "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"];
        var specials = names.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => ranked + p.i);
        for (int i = names.Length; i < 256; i++) specials[$"<|reserved_special_token_{i - 9}|>"] = ranked + i;
        try
        {
            using var stream = new MemoryStream(content);
            var tokenizer = TiktokenTokenizer.Create(stream, new RegexPreTokenizer(new Regex(Pattern, RegexOptions.Compiled), specials), normalizer: null, specialTokens: specials);
            return new Llama3TiktokenTokenizer(tokenizer, specials["<|begin_of_text|>"], specials["<|end_of_text|>"]);
        }
        catch (Exception e) when (e is FormatException or ArgumentException or InvalidOperationException)
        {
            throw new InvalidDataException($"{source}: not a tiktoken rank file ({e.Message}).", e);
        }
    }

    /// <inheritdoc/>
    public int[] Encode(string text, bool addBos)
    {
        var ids = _tokenizer.EncodeToIds(text);
        return addBos ? [_bos, .. ids] : [.. ids];
    }

    /// <inheritdoc/>
    public string Decode(IEnumerable<int> ids) => _tokenizer.Decode(ids.Where(i => i < _bos));
}
