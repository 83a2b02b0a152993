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

    private Llama3TiktokenTokenizer(TiktokenTokenizer tokenizer, int bos, int eos)
    {
        _tokenizer = tokenizer;
        BosId = bos;
        EosId = eos;
    }

    /// <inheritdoc/>
    public int BosId { get; }
    /// <inheritdoc/>
    public int EosId { get; }
    /// <summary>LLaMA-3 has no pad token; &lt;|end_of_text|&gt; pads (never attended to).</summary>
    public int PadId => EosId;

    /// <summary>True when <paramref name="path"/> looks like a tiktoken rank file rather than a SentencePiece model.</summary>
    public static bool IsTiktokenFile(string path)
    {
        using var reader = new StreamReader(path);
        string? first = reader.ReadLine();
        return first is not null && Regex.IsMatch(first, @"^[A-Za-z0-9+/]+=* \d+$");
    }

    /// <summary>Loads a tiktoken rank file; the specials get the ids right after the ranked tokens.</summary>
    public static Llama3TiktokenTokenizer Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found.", path);
        int ranked = File.ReadLines(path).Count(l => l.Length > 0);
        string[] names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>",
            "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|eot_id|>", "<|python_tag|>"];
        var specials = names.Select((n, i) => (n, i)).ToDictionary(p => p.n, p => ranked + p.i);
        for (int i = names.Length; i < 256; i++) specials[$"<|reserved_special_token_{i - 9}|>"] = ranked + i;
        try
        {
            using var stream = File.OpenRead(path);
            var tokenizer = TiktokenTokenizer.Create(stream, new RegexPreTokenizer(new Regex(Pattern, RegexOptions.Compiled), specials), normalizer: null, specialTokens: specials);
            return new Llama3TiktokenTokenizer(tokenizer, specials["<|begin_of_text|>"], specials["<|end_of_text|>"]);
        }
        catch (Exception e) when (e is FormatException or ArgumentException or InvalidOperationException)
        {
            throw new InvalidDataException($"{path}: not a tiktoken rank file ({e.Message}).", e);
        }
    }

    /// <inheritdoc/>
    public int[] Encode(string text, bool addBos)
    {
        var ids = _tokenizer.EncodeToIds(text);
        return addBos ? [BosId, .. ids] : [.. ids];
    }

    /// <inheritdoc/>
    public string Decode(IEnumerable<int> ids) => _tokenizer.Decode(ids.Where(i => i < BosId));
}

/// <summary>Opens a LLaMA <c>tokenizer.model</c> of either kind.</summary>
public static class CausalTokenizers
{
    /// <summary>A tiktoken rank file (LLaMA-3) or a SentencePiece model (LLaMA-1/2), told apart by content.</summary>
    public static ICausalTokenizer Load(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found.", path);
        return Llama3TiktokenTokenizer.IsTiktokenFile(path) ? Llama3TiktokenTokenizer.Load(path) : LlamaSentencePieceTokenizer.Load(path);
    }
}
