using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using System.Text.Unicode;
using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Bone.Tokenization;

/// <summary>How a byte-level tokenizer turns text into bytes and back.</summary>
public enum ByteTokenizerEncoding
{
    /// <summary>UTF-8 (Python's <c>"utf-8"</c>).</summary>
    Utf8,
    /// <summary>UTF-16 little-endian without a byte order mark (Python's <c>"utf-16-le"</c>): two bytes per UTF-16 code unit.</summary>
    Utf16LE,
}

/// <summary>
/// Base of the tokenizers whose tokens are byte strings of the text in a fixed encoding
/// (<see cref="RwkvWorldTokenizer"/>, <see cref="ByteTokenizer"/>): text is encoded to bytes, the bytes are cut into
/// tokens, and decoding concatenates the tokens' bytes and decodes them, so any byte sequence can be represented.
/// </summary>
/// <remarks>
/// There is no normalizer and no pre-tokenizer, so the <c>considerNormalization</c> / <c>considerPreTokenization</c>
/// arguments of the <see cref="Tokenizer"/> methods change nothing and the normalized text they report is null.
/// A token may end inside a character (a UTF-8 sequence split over two tokens, or half of a UTF-16 code unit); such
/// tokens report the characters they overlap as their offset and their bytes as <c>&lt;0xHH&gt;</c> as their value,
/// and a token-count limit only ever stops at a character boundary, so the ids returned always decode to exactly the
/// characters reported as consumed. Instances are immutable and safe to share between threads.
/// </remarks>
public abstract class ByteSequenceTokenizer : Tokenizer, ICausalTokenizer
{
    private static readonly Encoding Utf8Text = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: false);
    private static readonly Encoding Utf16LEText = new UnicodeEncoding(bigEndian: false, byteOrderMark: false, throwOnInvalidBytes: false);

    // Derived only inside this assembly: the token matching below relies on each implementation's guarantees.
    private protected ByteSequenceTokenizer(ByteTokenizerEncoding encoding, int? bosId, int eosId, int padId, int idLimit)
    {
        if (!Enum.IsDefined(encoding)) throw new ArgumentOutOfRangeException(nameof(encoding), encoding, "not a ByteTokenizerEncoding value");
        TextEncoding = encoding;
        BosId = bosId;
        EosId = eosId;
        PadId = padId;
        IdLimit = idLimit;
    }

    /// <summary>The encoding between text and the bytes that the tokens are cut from.</summary>
    public ByteTokenizerEncoding TextEncoding { get; }

    /// <inheritdoc/>
    public int? BosId { get; }

    /// <inheritdoc/>
    public int EosId { get; }

    /// <inheritdoc/>
    public int PadId { get; }

    /// <inheritdoc/>
    public int IdLimit { get; }

    /// <summary>
    /// The id of the longest token that <paramref name="bytes"/> (never empty) starts with, and its length in bytes
    /// (at least 1): every byte sequence must be encodable.
    /// </summary>
    private protected abstract int Match(ReadOnlySpan<byte> bytes, out int length);

    /// <summary>The bytes of token <paramref name="id"/>; empty for ids that stand for no bytes or are unknown.</summary>
    private protected abstract ReadOnlySpan<byte> BytesOf(int id);

    /// <summary>Ids of <paramref name="text"/>, preceded by BOS when <paramref name="addBos"/> and the tokenizer has one.</summary>
    public int[] Encode(string text, bool addBos)
    {
        ArgumentNullException.ThrowIfNull(text);
        byte[] bytes = RentBytes(text, out int length);
        try
        {
            var ids = new List<int>(length / 2 + 2);
            if (addBos && BosId is { } bos) ids.Add(bos);
            EncodeCore(bytes.AsSpan(0, length), int.MaxValue, ids, ends: null);
            return [.. ids];
        }
        finally { ArrayPool<byte>.Shared.Return(bytes); }
    }

    /// <summary>
    /// Ids of raw <paramref name="bytes"/>, which need not be valid text in <see cref="TextEncoding"/>;
    /// <see cref="DecodeBytes"/> gives them back exactly.
    /// </summary>
    public int[] EncodeBytes(ReadOnlySpan<byte> bytes)
    {
        var ids = new List<int>(bytes.Length / 2 + 1);
        EncodeCore(bytes, int.MaxValue, ids, ends: null);
        return [.. ids];
    }

    /// <summary>
    /// The concatenated bytes of <paramref name="ids"/>. Ids that stand for no bytes (an end-of-text id without text,
    /// ids outside the vocabulary) add nothing, so a model's stray ids never make decoding fail.
    /// </summary>
    public byte[] DecodeBytes(IEnumerable<int> ids)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var buffer = new ArrayBufferWriter<byte>();
        foreach (int id in ids)
        {
            ReadOnlySpan<byte> token = BytesOf(id);
            if (!token.IsEmpty) buffer.Write(token);
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>
    /// Text of <paramref name="ids"/>: their bytes (see <see cref="DecodeBytes"/>) decoded in
    /// <see cref="TextEncoding"/>, with U+FFFD for every invalid or incomplete sequence, so it never throws on
    /// model output.
    /// </summary>
    public override string Decode(IEnumerable<int> ids) => GetString(DecodeBytes(ids));

    /// <summary>
    /// Decodes <paramref name="ids"/> into <paramref name="destination"/>. When it is too small, the result stops after
    /// the last id whose bytes complete a character, so that decoding can resume at <paramref name="idsConsumed"/>
    /// without splitting a character; <paramref name="charsWritten"/> counts the characters up to there.
    /// </summary>
    /// <returns><see cref="OperationStatus.Done"/>, or <see cref="OperationStatus.DestinationTooSmall"/>.</returns>
    public override OperationStatus Decode(IEnumerable<int> ids, Span<char> destination, out int idsConsumed, out int charsWritten)
    {
        ArgumentNullException.ThrowIfNull(ids);
        idsConsumed = 0;
        charsWritten = 0;
        byte[] pending = ArrayPool<byte>.Shared.Rent(256);
        try
        {
            int pendingLength = 0, seen = 0, written = 0;
            foreach (int id in ids)
            {
                seen++;
                ReadOnlySpan<byte> token = BytesOf(id);
                if (!token.IsEmpty)
                {
                    if (pendingLength + token.Length > pending.Length)
                    {
                        byte[] larger = ArrayPool<byte>.Shared.Rent(pendingLength + token.Length);
                        pending.AsSpan(0, pendingLength).CopyTo(larger);
                        ArrayPool<byte>.Shared.Return(pending);
                        pending = larger;
                    }
                    token.CopyTo(pending.AsSpan(pendingLength));
                    pendingLength += token.Length;
                    // Bytes of an unfinished character stay pending until a later id completes it.
                    if (Transcode(pending.AsSpan(0, pendingLength), destination[written..], out int read, out int chars, final: false) == OperationStatus.DestinationTooSmall)
                        return OperationStatus.DestinationTooSmall;
                    written += chars;
                    pending.AsSpan(read, pendingLength - read).CopyTo(pending);
                    pendingLength -= read;
                }
                if (pendingLength == 0)
                {
                    idsConsumed = seen;
                    charsWritten = written;
                }
            }
            if (pendingLength > 0)
            {
                if (Transcode(pending.AsSpan(0, pendingLength), destination[written..], out _, out int chars, final: true) == OperationStatus.DestinationTooSmall)
                    return OperationStatus.DestinationTooSmall;
                written += chars;
            }
            idsConsumed = seen;
            charsWritten = written;
            return OperationStatus.Done;
        }
        finally { ArrayPool<byte>.Shared.Return(pending); }
    }

    /// <inheritdoc/>
    protected override EncodeResults<int> EncodeToIds(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        ReadOnlySpan<char> chars = text is null ? textSpan : text.AsSpan();
        int max = CheckMax(settings.MaxTokenCount);
        byte[] bytes = RentBytes(chars, out int length);
        try
        {
            var ids = new List<int>(Math.Min(max, length / 2 + 1));
            var ends = max == int.MaxValue ? null : new List<int>();
            int consumed = EncodeCore(bytes.AsSpan(0, length), max, ids, ends);
            int charsConsumed = chars.Length;
            if (consumed < length) (_, charsConsumed) = LastCharBoundary(chars, ends!);
            if (ends is not null) ids.RemoveRange(ends.Count, ids.Count - ends.Count);
            return new EncodeResults<int> { Tokens = ids, NormalizedText = null, CharsConsumed = charsConsumed };
        }
        finally { ArrayPool<byte>.Shared.Return(bytes); }
    }

    /// <inheritdoc/>
    protected override EncodeResults<EncodedToken> EncodeToTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        ReadOnlySpan<char> chars = text is null ? textSpan : text.AsSpan();
        int max = CheckMax(settings.MaxTokenCount);
        byte[] bytes = RentBytes(chars, out int length);
        try
        {
            var ids = new List<int>();
            var ends = new List<int>();
            int consumed = EncodeCore(bytes.AsSpan(0, length), max, ids, ends);
            int count = ids.Count, charsConsumed = chars.Length;
            if (consumed < length) (count, charsConsumed) = LastCharBoundary(chars, ends);
            var tokens = new List<EncodedToken>(count);
            var cursor = new CharCursor(chars, TextEncoding);
            int start = 0;
            (int Floor, int Ceiling) from = cursor.Locate(0);
            for (int i = 0; i < count; i++)
            {
                var to = cursor.Locate(ends[i]);
                bool whole = from.Floor == from.Ceiling && to.Floor == to.Ceiling;
                string value = whole ? chars[from.Floor..to.Floor].ToString() : ByteNames(bytes.AsSpan(start, ends[i] - start));
                tokens.Add(new EncodedToken(ids[i], value, new Range(from.Floor, to.Ceiling)));
                start = ends[i];
                from = to;
            }
            return new EncodeResults<EncodedToken> { Tokens = tokens, NormalizedText = null, CharsConsumed = charsConsumed };
        }
        finally { ArrayPool<byte>.Shared.Return(bytes); }
    }

    /// <inheritdoc/>
    protected override int CountTokens(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings)
    {
        ReadOnlySpan<char> chars = text is null ? textSpan : text.AsSpan();
        byte[] bytes = RentBytes(chars, out int length);
        try
        {
            ReadOnlySpan<byte> span = bytes.AsSpan(0, length);
            int count = 0;
            for (int position = 0; position < span.Length; count++)
            {
                Match(span[position..], out int tokenLength);
                position += tokenLength;
            }
            return count;
        }
        finally { ArrayPool<byte>.Shared.Return(bytes); }
    }

    /// <summary>
    /// The character index up to which (or, with <paramref name="fromEnd"/>, from which) the text encodes to at most
    /// the settings' maximum token count, at a character boundary.
    /// </summary>
    /// <remarks>
    /// From the end, the suffix starts at a token boundary of the whole text's encoding: matching is greedy from left
    /// to right, so the suffix from such a boundary encodes to exactly the whole encoding's tokens after it.
    /// </remarks>
    protected override int GetIndexByTokenCount(string? text, ReadOnlySpan<char> textSpan, EncodeSettings settings, bool fromEnd, out string? normalizedText, out int tokenCount)
    {
        ReadOnlySpan<char> chars = text is null ? textSpan : text.AsSpan();
        int max = CheckMax(settings.MaxTokenCount);
        normalizedText = null;
        byte[] bytes = RentBytes(chars, out int length);
        try
        {
            var ids = new List<int>();
            var ends = new List<int>();
            if (!fromEnd)
            {
                int consumed = EncodeCore(bytes.AsSpan(0, length), max, ids, ends);
                if (consumed == length)
                {
                    tokenCount = ids.Count;
                    return chars.Length;
                }
                (tokenCount, int index) = LastCharBoundary(chars, ends);
                return index;
            }
            EncodeCore(bytes.AsSpan(0, length), int.MaxValue, ids, ends);
            int n = ids.Count, first = Math.Max(0, n - max);
            var cursor = new CharCursor(chars, TextEncoding);
            for (int k = 0; k < n; k++)
            {
                var at = cursor.Locate(k == 0 ? 0 : ends[k - 1]);
                if (k >= first && at.Floor == at.Ceiling)
                {
                    tokenCount = n - k;
                    return at.Floor;
                }
            }
            tokenCount = 0;
            return chars.Length;
        }
        finally { ArrayPool<byte>.Shared.Return(bytes); }
    }

    /// <summary>The text of <paramref name="bytes"/> in <see cref="TextEncoding"/>, with U+FFFD for invalid sequences.</summary>
    private protected string GetString(ReadOnlySpan<byte> bytes)
    {
        if (TextEncoding == ByteTokenizerEncoding.Utf8) return Utf8Text.GetString(bytes);
        // Every two bytes give at most one char, plus one U+FFFD for an odd trailing byte.
        char[] chars = ArrayPool<char>.Shared.Rent(bytes.Length / 2 + 1);
        try
        {
            Utf16LEToChars(bytes, chars, out _, out int written, final: true);
            return new string(chars, 0, written);
        }
        finally { ArrayPool<char>.Shared.Return(chars); }
    }

    // Greedy tokenisation of bytes: at most max tokens; returns the bytes consumed; ends gets each token's end offset.
    private int EncodeCore(ReadOnlySpan<byte> bytes, int max, List<int> ids, List<int>? ends)
    {
        int position = 0;
        for (int count = 0; position < bytes.Length && count < max; count++)
        {
            ids.Add(Match(bytes[position..], out int tokenLength));
            position += tokenLength;
            ends?.Add(position);
        }
        return position;
    }

    // After a token limit cut the text short: the most tokens (of ends) that end on a character boundary, and that boundary.
    private (int Tokens, int Chars) LastCharBoundary(ReadOnlySpan<char> chars, List<int> ends)
    {
        var cursor = new CharCursor(chars, TextEncoding);
        (int Tokens, int Chars) best = (0, 0);
        for (int i = 0; i < ends.Count; i++)
        {
            var at = cursor.Locate(ends[i]);
            if (at.Floor == at.Ceiling) best = (i + 1, at.Floor);
        }
        ends.RemoveRange(best.Tokens, ends.Count - best.Tokens);
        return best;
    }

    private static int CheckMax(int max) =>
        max > 0 ? max : throw new ArgumentOutOfRangeException(nameof(EncodeSettings.MaxTokenCount), max, "the maximum token count must be positive");

    private byte[] RentBytes(ReadOnlySpan<char> text, out int length)
    {
        Encoding encoding = TextEncoding == ByteTokenizerEncoding.Utf8 ? Utf8Text : Utf16LEText;
        byte[] bytes = ArrayPool<byte>.Shared.Rent(Math.Max(1, encoding.GetMaxByteCount(text.Length)));
        length = encoding.GetBytes(text, bytes);
        return bytes;
    }

    private static string ByteNames(ReadOnlySpan<byte> bytes)
    {
        var text = new StringBuilder(bytes.Length * 6);
        foreach (byte b in bytes) text.Append("<0x").Append(b.ToString("X2", System.Globalization.CultureInfo.InvariantCulture)).Append('>');
        return text.ToString();
    }

    private OperationStatus Transcode(ReadOnlySpan<byte> bytes, Span<char> destination, out int read, out int written, bool final)
    {
        if (TextEncoding == ByteTokenizerEncoding.Utf16LE) return Utf16LEToChars(bytes, destination, out read, out written, final);
        OperationStatus status = Utf8.ToUtf16(bytes, destination, out read, out written, replaceInvalidSequences: true, isFinalBlock: final);
        return status == OperationStatus.NeedMoreData ? OperationStatus.Done : status;
    }

    /// <summary>
    /// UTF-16LE bytes to chars: lone surrogates and an odd trailing byte become U+FFFD. Unless <paramref name="final"/>,
    /// a trailing odd byte or high surrogate is left unread for the next call.
    /// </summary>
    internal static OperationStatus Utf16LEToChars(ReadOnlySpan<byte> bytes, Span<char> destination, out int read, out int written, bool final)
    {
        int i = 0, w = 0;
        OperationStatus status = OperationStatus.Done;
        while (i + 1 < bytes.Length)
        {
            char c = (char)BinaryPrimitives.ReadUInt16LittleEndian(bytes[i..]);
            if (char.IsHighSurrogate(c))
            {
                if (i + 3 < bytes.Length)
                {
                    char low = (char)BinaryPrimitives.ReadUInt16LittleEndian(bytes[(i + 2)..]);
                    if (char.IsLowSurrogate(low))
                    {
                        if (w + 2 > destination.Length) { status = OperationStatus.DestinationTooSmall; break; }
                        destination[w++] = c;
                        destination[w++] = low;
                        i += 4;
                        continue;
                    }
                }
                else if (!final) break;
                c = '\uFFFD';
            }
            else if (char.IsLowSurrogate(c)) c = '\uFFFD';
            if (w + 1 > destination.Length) { status = OperationStatus.DestinationTooSmall; break; }
            destination[w++] = c;
            i += 2;
        }
        if (status == OperationStatus.Done && final && i < bytes.Length)
        {
            // What is left is one odd byte, or a high surrogate and an odd byte that were just replaced.
            if (w + 1 > destination.Length) status = OperationStatus.DestinationTooSmall;
            else
            {
                destination[w++] = '\uFFFD';
                i = bytes.Length;
            }
        }
        read = i;
        written = w;
        return status;
    }

    /// <summary>
    /// Walks a text's characters alongside its encoded bytes to find, for a byte offset, the character that holds it
    /// (<c>Floor</c>) and the end of that character (<c>Ceiling</c>; equal to Floor on a character boundary).
    /// Offsets must be asked in increasing order.
    /// </summary>
    private ref struct CharCursor(ReadOnlySpan<char> text, ByteTokenizerEncoding encoding)
    {
        private readonly ReadOnlySpan<char> _text = text;
        private readonly bool _utf8 = encoding == ByteTokenizerEncoding.Utf8;
        private int _char;
        private int _byte;

        public (int Floor, int Ceiling) Locate(int offset)
        {
            while (_char < _text.Length)
            {
                var (bytes, chars) = Width();
                if (_byte + bytes > offset) return _byte == offset ? (_char, _char) : (_char, _char + chars);
                _byte += bytes;
                _char += chars;
            }
            return (_char, _char);
        }

        // Bytes and chars of the character at _char, as the replacing encoders write it (a lone surrogate becomes U+FFFD);
        // a surrogate pair is one character, never split.
        private readonly (int Bytes, int Chars) Width()
        {
            char c = _text[_char];
            bool pair = char.IsHighSurrogate(c) && _char + 1 < _text.Length && char.IsLowSurrogate(_text[_char + 1]);
            if (pair) return (4, 2);
            if (!_utf8) return (2, 1);
            return c < 0x80 ? (1, 1) : c < 0x800 ? (2, 1) : (3, 1);
        }
    }
}
