using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Bone.Tokenization;

/// <summary>
/// The byte-level BPE of GPT-2-style causal LMs (Qwen2 and others): <c>vocab.json</c> + <c>merges.txt</c>, the
/// pre-tokenisation pattern from <c>tokenizer.json</c> when present (GPT-2's otherwise), and the added special tokens
/// of <c>tokenizer.json</c> or <c>tokenizer_config.json</c>. Special token ids come from the model's config.
/// </summary>
public sealed class ByteLevelBpeTokenizer : ICausalTokenizer
{
    /// <summary>GPT-2's pre-tokenisation pattern.</summary>
    public const string Gpt2Pattern = @"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

    private readonly BpeTokenizer _bpe;
    private readonly HashSet<int> _special;

    private ByteLevelBpeTokenizer(BpeTokenizer bpe, int? bos, int eos, int pad, HashSet<int> special, int idLimit)
    {
        IdLimit = idLimit;
        _bpe = bpe;
        BosId = bos;
        EosId = eos;
        PadId = pad;
        _special = special;
    }

    /// <inheritdoc/>
    public int? BosId { get; }
    /// <inheritdoc/>
    public int EosId { get; }
    /// <inheritdoc/>
    public int PadId { get; }
    /// <inheritdoc/>
    public int IdLimit { get; }

    /// <summary>
    /// Builds the tokenizer from the files in <paramref name="files"/> (by name). <paramref name="bos"/> and
    /// <paramref name="eos"/> are the model's ids (config.json); padding uses EOS (never attended to).
    /// </summary>
    public static ByteLevelBpeTokenizer Load(TokenizerFiles files, int? bos, int eos)
    {
        string where = files.Describe("vocab.json");
        Dictionary<string, int> vocab;
        try { vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(files.Bytes("vocab.json")) ?? throw new InvalidDataException($"{where}: empty vocabulary."); }
        catch (JsonException e) { throw new InvalidDataException($"{where}: not a JSON object of token → id ({e.Message}).", e); }
        var merges = System.Text.Encoding.UTF8.GetString(files.Bytes("merges.txt")).Split('\n')
            .Select(l => l.TrimEnd('\r')).Where(l => l.Length > 0 && !l.StartsWith("#version", StringComparison.Ordinal)).ToList();
        foreach (string merge in merges)
            if (merge.Split(' ').Length != 2) throw new InvalidDataException($"{files.Describe("merges.txt")}: line \"{merge}\" is not two tokens separated by a space.");

        var (pattern, added) = ReadTokenizerJson(files);
        foreach (var (token, id) in added) vocab.TryAdd(token, id);
        var specials = added.Count == 0 ? null : added;
        try
        {
            var bpe = BpeTokenizer.Create(new BpeOptions(vocab)
            {
                Merges = merges,
                ByteLevel = true,
                SpecialTokens = specials,
                PreTokenizer = new RegexPreTokenizer(new Regex(pattern, RegexOptions.Compiled), specials),
            });
            return new ByteLevelBpeTokenizer(bpe, bos, eos, eos, [.. added.Values, eos, .. bos is { } b ? new[] { b } : []], vocab.Values.Max() + 1);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"{where}: vocab.json / merges.txt could not be read as a byte-level BPE ({e.Message}).", e);
        }
    }

    /// <inheritdoc/>
    public int[] Encode(string text, bool addBos)
    {
        var ids = _bpe.EncodeToIds(text);
        return addBos && BosId is { } bos ? [bos, .. ids] : [.. ids];
    }

    /// <inheritdoc/>
    public string Decode(IEnumerable<int> ids) => _bpe.Decode(ids.Where(i => !_special.Contains(i))) ?? "";

    // The Split pattern of tokenizer.json's pre_tokenizer, and added tokens with their ids.
    private static (string Pattern, Dictionary<string, int> Added) ReadTokenizerJson(TokenizerFiles files)
    {
        var added = new Dictionary<string, int>(StringComparer.Ordinal);
        string pattern = Gpt2Pattern;
        if (files.Has("tokenizer.json"))
        {
            using var doc = Parse(files, "tokenizer.json");
            if (doc.RootElement.TryGetProperty("added_tokens", out var tokens) && tokens.ValueKind == JsonValueKind.Array)
                foreach (var t in tokens.EnumerateArray())
                    if (t.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String && t.TryGetProperty("id", out var id) && id.TryGetInt32(out int i))
                        added[c.GetString()!] = i;
            if (FindSplitPattern(doc.RootElement.TryGetProperty("pre_tokenizer", out var pre) ? pre : default) is { } p) pattern = p;
        }
        else if (files.Has("tokenizer_config.json"))
        {
            using var doc = Parse(files, "tokenizer_config.json");
            if (doc.RootElement.TryGetProperty("added_tokens_decoder", out var decoder) && decoder.ValueKind == JsonValueKind.Object)
                foreach (var p in decoder.EnumerateObject())
                    if (int.TryParse(p.Name, out int id) && p.Value.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String)
                        added[c.GetString()!] = id;
        }
        return (pattern, added);
    }

    private static string? FindSplitPattern(JsonElement pre)
    {
        if (pre.ValueKind != JsonValueKind.Object) return null;
        if (pre.TryGetProperty("type", out var type) && type.GetString() == "Split" && pre.TryGetProperty("pattern", out var p) && p.TryGetProperty("Regex", out var regex))
            return regex.GetString();
        if (pre.TryGetProperty("pretokenizers", out var list) && list.ValueKind == JsonValueKind.Array)
            foreach (var item in list.EnumerateArray())
                if (FindSplitPattern(item) is { } found) return found;
        return null;
    }

    private static JsonDocument Parse(TokenizerFiles files, string name)
    {
        if (!System.Text.Unicode.Utf8.IsValid(files.Bytes(name))) throw new InvalidDataException($"{files.Describe(name)}: not valid UTF-8.");
        try { return JsonDocument.Parse(files.Bytes(name)); }
        catch (JsonException e) { throw new InvalidDataException($"{files.Describe(name)}: not valid JSON ({e.Message}).", e); }
    }
}
