using System.Globalization;
using System.Text;

namespace Microsoft.ML.Bone.Tokenization;

/// <summary>
/// The RWKV "World" tokenizer (<c>rwkv_vocab_v20230424.txt</c>): every token is a byte string, and encoding takes the
/// longest token that the UTF-8 bytes at each position start with (greedy, left to right; not BPE). Ids 1…256 are the
/// single bytes 0x00…0xFF, so every text and every byte sequence can be encoded.
/// </summary>
/// <remarks>
/// Id 0 is not in the vocabulary file: it is the end-of-text id that separates documents in RWKV's training data, and
/// it also pads. RWKV uses no beginning-of-sequence token and nothing is added automatically.
/// </remarks>
public sealed class RwkvWorldTokenizer : ByteSequenceTokenizer
{
    /// <summary>The vocabulary file's name, as RWKV ships it and as it is stored among a model's tokenizer files.</summary>
    public const string FileName = "rwkv_vocab_v20230424.txt";

    /// <summary>End of text / document separator, also the padding id; it has no bytes.</summary>
    public const int EndOfTextId = 0;

    // Longest token the matcher tries; longer lines are refused at load so matching never needs more look-ahead.
    private const int MaxSupportedTokenLength = 4096;

    // Ids index arrays; a bound keeps a corrupt id from allocating gigabytes.
    private const int MaxSupportedId = (1 << 22) - 1;

    private readonly byte[] _tokenBytes;   // all tokens' bytes, by id
    private readonly int[] _tokenStart;    // token id's bytes are _tokenBytes[_tokenStart[id].._tokenStart[id + 1]]
    private readonly int[] _rootChild;     // trie node after the first byte (every byte has one)
    private readonly int[] _nodeToken;     // token id ending at a node, or -1
    private readonly int[] _firstEdge;     // node's children are edges _firstEdge[node].._firstEdge[node + 1], by byte
    private readonly byte[] _edgeByte;
    private readonly int[] _edgeTarget;

    private RwkvWorldTokenizer(byte[] tokenBytes, int[] tokenStart, int[] rootChild, int[] nodeToken, int[] firstEdge, byte[] edgeByte, int[] edgeTarget, int count, int maxLength)
        : base(ByteTokenizerEncoding.Utf8, bosId: null, eosId: EndOfTextId, padId: EndOfTextId, idLimit: tokenStart.Length - 1)
    {
        _tokenBytes = tokenBytes;
        _tokenStart = tokenStart;
        _rootChild = rootChild;
        _nodeToken = nodeToken;
        _firstEdge = firstEdge;
        _edgeByte = edgeByte;
        _edgeTarget = edgeTarget;
        TokenCount = count;
        MaxTokenLength = maxLength;
    }

    /// <summary>Number of tokens in the vocabulary file (id 0 not included).</summary>
    public int TokenCount { get; }

    /// <summary>Length in bytes of the longest token.</summary>
    public int MaxTokenLength { get; }

    /// <summary>Loads a vocabulary file; errors name <paramref name="path"/> and the line.</summary>
    public static RwkvWorldTokenizer Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found; RWKV World models need {FileName}.", path);
        return Load(IO.InputFile.ReadAllBytes(path), path);
    }

    /// <summary>
    /// Loads a vocabulary file's <paramref name="content"/>: UTF-8 lines <c>&lt;id&gt; &lt;Python str or bytes
    /// literal&gt; &lt;byte length&gt;</c>. Every literal is decoded with Python's escape rules (a str is taken as its
    /// UTF-8 bytes) and checked against the length field; errors are <see cref="InvalidDataException"/>s naming
    /// <paramref name="source"/> and the line.
    /// </summary>
    public static RwkvWorldTokenizer Load(byte[] content, string source)
    {
        ArgumentNullException.ThrowIfNull(content);
        ArgumentNullException.ThrowIfNull(source);
        var strict = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        var tokens = new List<(int Id, byte[] Bytes, int Line)>(70000);
        var literal = new List<byte>(256);
        int lineNumber = 0;
        ReadOnlySpan<byte> rest = content.AsSpan();
        if (rest.StartsWith((ReadOnlySpan<byte>)[0xEF, 0xBB, 0xBF])) rest = rest[3..];
        while (!rest.IsEmpty)
        {
            lineNumber++;
            int newline = rest.IndexOf((byte)'\n');
            ReadOnlySpan<byte> raw = newline < 0 ? rest : rest[..newline];
            rest = newline < 0 ? [] : rest[(newline + 1)..];
            if (!raw.IsEmpty && raw[^1] == '\r') raw = raw[..^1];
            string line;
            try { line = strict.GetString(raw); }
            catch (DecoderFallbackException) { throw Bad(source, lineNumber, "is not valid UTF-8 text"); }
            if (string.IsNullOrWhiteSpace(line)) continue;

            int firstSpace = line.IndexOf(' '), lastSpace = line.LastIndexOf(' ');
            if (firstSpace <= 0 || lastSpace <= firstSpace)
                throw Bad(source, lineNumber, "is not \"<id> <literal> <byte length>\"");
            if (!int.TryParse(line.AsSpan(0, firstSpace), NumberStyles.None, CultureInfo.InvariantCulture, out int id))
                throw Bad(source, lineNumber, $"starts with \"{line[..firstSpace]}\", not a token id");
            if (id == EndOfTextId)
                throw Bad(source, lineNumber, $"gives id {EndOfTextId}, which is reserved for end of text");
            if (id > MaxSupportedId)
                throw Bad(source, lineNumber, $"gives id {id}; ids above {MaxSupportedId} are not supported");
            if (!int.TryParse(line.AsSpan(lastSpace + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int declared))
                throw Bad(source, lineNumber, $"ends with \"{line[(lastSpace + 1)..]}\", not a byte length");
            literal.Clear();
            string? error = PythonLiteral.Decode(line.AsSpan(firstSpace + 1, lastSpace - firstSpace - 1).Trim(), literal);
            if (error is not null) throw Bad(source, lineNumber, $"has an invalid literal: {error}");
            if (literal.Count != declared)
                throw Bad(source, lineNumber, $"decodes to {literal.Count} bytes, but its length field says {declared}");
            if (literal.Count == 0) throw Bad(source, lineNumber, "is an empty token");
            if (literal.Count > MaxSupportedTokenLength) throw Bad(source, lineNumber, $"is a token of {literal.Count} bytes; at most {MaxSupportedTokenLength} are supported");
            tokens.Add((id, [.. literal], lineNumber));
        }
        if (tokens.Count == 0) throw new InvalidDataException($"{source}: no tokens; an RWKV vocabulary has one \"<id> <literal> <byte length>\" line per token.");
        return Build(tokens, source);
    }

    private static RwkvWorldTokenizer Build(List<(int Id, byte[] Bytes, int Line)> tokens, string source)
    {
        int maxId = tokens.Max(t => t.Id);
        var lineOfId = new int[maxId + 1];
        foreach (var (id, _, line) in tokens)
        {
            if (lineOfId[id] != 0) throw Bad(source, line, $"gives id {id} again (first on line {lineOfId[id]})");
            lineOfId[id] = line;
        }

        // Bytes by id.
        var byId = new byte[maxId + 1][];
        foreach (var t in tokens) byId[t.Id] = t.Bytes;
        var start = new int[maxId + 2];
        for (int id = 0; id <= maxId; id++) start[id + 1] = start[id] + (byId[id]?.Length ?? 0);
        var all = new byte[start[maxId + 1]];
        for (int id = 0; id <= maxId; id++) byId[id]?.CopyTo(all, start[id]);

        // Trie: node 0 is the root; an edge is (parent << 8 | byte) → child.
        var edges = new Dictionary<long, int>(all.Length);
        var nodeToken = new List<int>(all.Length + 1) { -1 };
        int maxLength = 0;
        foreach (var (id, bytes, line) in tokens)
        {
            int node = 0;
            foreach (byte b in bytes)
            {
                long key = (long)node << 8 | b;
                if (!edges.TryGetValue(key, out int child))
                {
                    child = nodeToken.Count;
                    nodeToken.Add(-1);
                    edges.Add(key, child);
                }
                node = child;
            }
            if (nodeToken[node] >= 0) throw Bad(source, line, $"repeats the bytes of token {nodeToken[node]} (line {lineOfId[nodeToken[node]]})");
            nodeToken[node] = id;
            maxLength = Math.Max(maxLength, bytes.Length);
        }
        var rootChild = new int[256];
        for (int b = 0; b < 256; b++)
        {
            // Single bytes are what make every input encodable; without one, some texts would have no tokens.
            if (!edges.TryGetValue(b, out int child) || nodeToken[child] < 0)
                throw new InvalidDataException($"{source}: no token for the single byte 0x{b:X2}; an RWKV vocabulary has all 256 single bytes (ids 1…256), so that every text can be encoded.");
            rootChild[b] = child;
        }

        long[] keys = [.. edges.Keys];
        int[] targets = [.. edges.Values];
        Array.Sort(keys, targets);
        int nodes = nodeToken.Count;
        var firstEdge = new int[nodes + 1];
        var edgeByte = new byte[keys.Length];
        foreach (long key in keys) firstEdge[(int)(key >> 8) + 1]++;
        for (int n = 0; n < nodes; n++) firstEdge[n + 1] += firstEdge[n];
        for (int i = 0; i < keys.Length; i++) edgeByte[i] = (byte)keys[i];
        return new RwkvWorldTokenizer(all, start, rootChild, [.. nodeToken], firstEdge, edgeByte, targets, tokens.Count, maxLength);
    }

    private protected override int Match(ReadOnlySpan<byte> bytes, out int length)
    {
        int node = _rootChild[bytes[0]];
        int best = _nodeToken[node], bestLength = 1;
        int limit = Math.Min(bytes.Length, MaxTokenLength);
        for (int i = 1; i < limit; i++)
        {
            int first = _firstEdge[node], count = _firstEdge[node + 1] - first;
            if (count == 0) break;
            int k = _edgeByte.AsSpan(first, count).BinarySearch(bytes[i]);
            if (k < 0) break;
            node = _edgeTarget[first + k];
            if (_nodeToken[node] >= 0)
            {
                best = _nodeToken[node];
                bestLength = i + 1;
            }
        }
        length = bestLength;
        return best;
    }

    private protected override ReadOnlySpan<byte> BytesOf(int id) =>
        (uint)id < (uint)(_tokenStart.Length - 1) ? _tokenBytes.AsSpan(_tokenStart[id], _tokenStart[id + 1] - _tokenStart[id]) : default;

    private static InvalidDataException Bad(string source, int line, string what) => new($"{source}: line {line} {what}.");
}

/// <summary>Decodes Python str / bytes literals as the RWKV vocabulary writes them (<c>'…'</c>, <c>"…"</c>, <c>b'…'</c>).</summary>
internal static class PythonLiteral
{
    /// <summary>
    /// Appends the bytes of <paramref name="literal"/> to <paramref name="output"/>: a bytes literal's bytes, or a str
    /// literal's UTF-8. Returns why it is not a valid literal, or null.
    /// </summary>
    /// <remarks>
    /// Follows Python 3: prefixes b, r, u (any case; br / rb); single, double or triple quotes; escapes \\ \' \" \a
    /// \b \f \n \r \t \v, \ooo (octal), \xhh, and in str also \uXXXX and \UXXXXXXXX; an unknown escape keeps its
    /// backslash. A str code point that is a surrogate is refused, as Python cannot encode it to UTF-8.
    /// </remarks>
    public static string? Decode(ReadOnlySpan<char> literal, List<byte> output)
    {
        int p = 0;
        bool isBytes = false, raw = false, isUnicode = false;
        while (p < literal.Length && char.IsAsciiLetter(literal[p]))
        {
            switch (char.ToLowerInvariant(literal[p]))
            {
                case 'b' when !isBytes && !isUnicode: isBytes = true; break;
                case 'r' when !raw && !isUnicode: raw = true; break;
                case 'u' when !isBytes && !raw && p == 0: isUnicode = true; break;
                default: return $"unknown string prefix \"{literal[..(p + 1)]}\"";
            }
            p++;
        }
        if (p >= literal.Length || literal[p] is not ('\'' or '"')) return "expected a quoted string";
        char quote = literal[p];
        int quoteLength = literal[p..].StartsWith(new string(quote, 3)) && literal.Length - p >= 6 ? 3 : 1;
        int bodyStart = p + quoteLength, bodyEnd = literal.Length - quoteLength;
        if (bodyEnd < bodyStart || !literal[bodyEnd..].SequenceEqual(literal.Slice(p, quoteLength)))
            return "the closing quote is missing or something follows it";
        ReadOnlySpan<char> body = literal[bodyStart..bodyEnd];

        Span<byte> utf8 = stackalloc byte[4];
        for (int i = 0; i < body.Length;)
        {
            char c = body[i];
            if (c == quote && quoteLength == 1) return "an unescaped quote ends the string early";
            if (c != '\\')
            {
                if (Rune.DecodeFromUtf16(body[i..], out Rune rune, out int used) != System.Buffers.OperationStatus.Done) return "a lone surrogate character";
                if (isBytes && !rune.IsAscii) return "a bytes literal may only hold ASCII characters";
                AppendRune(rune, output, utf8);
                i += used;
                continue;
            }
            if (i + 1 >= body.Length) return "the string ends with a lone backslash";
            char e = body[i + 1];
            if (raw)
            {
                // A raw string keeps the backslash; it only stops a quote (or backslash) after it from ending the string.
                output.Add((byte)'\\');
                if (e == quote || e == '\\')
                {
                    output.Add((byte)e);
                    i += 2;
                }
                else i++;
                continue;
            }
            i += 2;
            int value;
            switch (e)
            {
                case '\\': value = '\\'; break;
                case '\'': value = '\''; break;
                case '"': value = '"'; break;
                case 'a': value = 7; break;
                case 'b': value = 8; break;
                case 'f': value = 12; break;
                case 'n': value = 10; break;
                case 'r': value = 13; break;
                case 't': value = 9; break;
                case 'v': value = 11; break;
                case >= '0' and <= '7':
                    value = e - '0';
                    for (int digits = 1; digits < 3 && i < body.Length && body[i] is >= '0' and <= '7'; digits++, i++) value = value * 8 + (body[i] - '0');
                    break;
                case 'x':
                    if (!Hex(body, ref i, 2, out value)) return "\\x needs two hex digits";
                    break;
                case 'u' when !isBytes:
                    if (!Hex(body, ref i, 4, out value)) return "\\u needs four hex digits";
                    break;
                case 'U' when !isBytes:
                    if (!Hex(body, ref i, 8, out value) || value > 0x10FFFF) return "\\U needs eight hex digits of a code point up to 10FFFF";
                    break;
                case 'N' when !isBytes:
                    return "\\N{name} escapes are not supported";
                default:
                    // Python keeps an unknown escape as written (backslash included).
                    output.Add((byte)'\\');
                    i--;
                    continue;
            }
            if (isBytes)
            {
                if (value > 0xFF) return $"the octal escape \\{Convert.ToString(value, 8)} is larger than a byte";
                output.Add((byte)value);
            }
            else
            {
                if (!Rune.IsValid(value)) return $"U+{value:X4} is a surrogate, which has no UTF-8 form";
                AppendRune(new Rune(value), output, utf8);
            }
        }
        return null;
    }

    private static void AppendRune(Rune rune, List<byte> output, Span<byte> buffer)
    {
        int n = rune.EncodeToUtf8(buffer);
        for (int k = 0; k < n; k++) output.Add(buffer[k]);
    }

    private static bool Hex(ReadOnlySpan<char> body, ref int i, int digits, out int value)
    {
        value = 0;
        if (i + digits > body.Length) return false;
        for (int k = 0; k < digits; k++)
        {
            int d = HexDigit(body[i + k]);
            if (d < 0) return false;
            value = value * 16 + d;
        }
        i += digits;
        return true;
    }

    private static int HexDigit(char c) => c switch
    {
        >= '0' and <= '9' => c - '0',
        >= 'a' and <= 'f' => c - 'a' + 10,
        >= 'A' and <= 'F' => c - 'A' + 10,
        _ => -1,
    };
}
