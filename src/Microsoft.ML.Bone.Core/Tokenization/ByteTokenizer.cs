using System.Text;
using System.Text.Json;

namespace Microsoft.ML.Bone.Tokenization;

/// <summary>
/// The tokenizer of byte-level models (vocabulary 256, such as rwkv.cpp's tiny test model): text is encoded in
/// <see cref="ByteSequenceTokenizer.TextEncoding"/> and every byte is one token whose id is the byte's value.
/// </summary>
/// <remarks>
/// Its file form is <see cref="FileName"/>, a small JSON object, for example
/// <c>{"type":"bytes","encoding":"utf-16-le","eos_token_id":0,"pad_token_id":0}</c>, so that it travels with a model's
/// other tokenizer files. Every id 0…255 is a byte of the text, EOS and padding included, so decoding keeps them all.
/// With UTF-16LE, byte 0 is half of every ASCII character: a generation loop that stops at <see cref="ByteSequenceTokenizer.EosId"/> 0
/// would stop after the first character, so give such models an end-of-sequence id that suits them.
/// </remarks>
public sealed class ByteTokenizer : ByteSequenceTokenizer
{
    /// <summary>The file name of the JSON form among a model's tokenizer files.</summary>
    public const string FileName = "byte_tokenizer.json";

    /// <summary>The value of the JSON form's <c>type</c> field.</summary>
    public const string TypeName = "bytes";

    private static readonly byte[] AllBytes = [.. Enumerable.Range(0, 256).Select(b => (byte)b)];

    /// <summary>A byte tokenizer for <paramref name="encoding"/>; the special ids must be bytes (0…255).</summary>
    /// <param name="encoding">How text becomes bytes.</param>
    /// <param name="eosId">End-of-sequence id appended to training responses.</param>
    /// <param name="padId">Padding id (never attended to).</param>
    /// <param name="bosId">Beginning-of-sequence id put before prompts, or null (the default) for none.</param>
    public ByteTokenizer(ByteTokenizerEncoding encoding = ByteTokenizerEncoding.Utf8, int eosId = 0, int padId = 0, int? bosId = null)
        : base(encoding, CheckId(bosId, nameof(bosId)), CheckId(eosId, nameof(eosId))!.Value, CheckId(padId, nameof(padId))!.Value, idLimit: 256)
    {
    }

    /// <summary>Loads the JSON form from <paramref name="path"/>; errors name the file and the field.</summary>
    public static ByteTokenizer Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        return Load(IO.InputFile.ReadAllBytes(path), path);
    }

    /// <summary>
    /// Loads the JSON form's <paramref name="content"/>: <c>type</c> must be <c>"bytes"</c>; <c>encoding</c> is
    /// <c>"utf-8"</c> (the default) or <c>"utf-16-le"</c>; <c>eos_token_id</c> and <c>pad_token_id</c> are bytes,
    /// 0 by default; <c>bos_token_id</c> is a byte or null (the default). Other fields are ignored. Errors are
    /// <see cref="InvalidDataException"/>s naming <paramref name="source"/> and the field.
    /// </summary>
    public static ByteTokenizer Load(byte[] content, string source)
    {
        ArgumentNullException.ThrowIfNull(content);
        ArgumentNullException.ThrowIfNull(source);
        // The JSON reader accepts broken UTF-8 inside strings and fails only when one is read; refuse it up front.
        if (!System.Text.Unicode.Utf8.IsValid(content)) throw new InvalidDataException($"{source}: not valid UTF-8.");
        JsonDocument document;
        try { document = JsonDocument.Parse(content); }
        catch (JsonException e) { throw new InvalidDataException($"{source}: not valid JSON ({e.Message}).", e); }
        using (document)
        {
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{source}: expected a JSON object like {new ByteTokenizer().ToJson()}.");
            if (!root.TryGetProperty("type", out JsonElement type) || type.ValueKind != JsonValueKind.String || type.GetString() != TypeName)
                throw new InvalidDataException($"{source}: field \"type\" must be \"{TypeName}\".");
            var encoding = ByteTokenizerEncoding.Utf8;
            if (root.TryGetProperty("encoding", out JsonElement name))
                encoding = (name.ValueKind == JsonValueKind.String ? ParseEncoding(name.GetString()!) : null)
                    ?? throw new InvalidDataException($"{source}: field \"encoding\" must be \"utf-8\" or \"utf-16-le\", not {name.GetRawText()}.");
            int? Id(string field, int? fallback)
            {
                if (!root.TryGetProperty(field, out JsonElement value)) return fallback;
                if (value.ValueKind == JsonValueKind.Null && fallback is null) return null;
                if (value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int id) && id is >= 0 and <= 255) return id;
                throw new InvalidDataException($"{source}: field \"{field}\" must be a byte value 0…255{(fallback is null ? " or null" : "")}, not {value.GetRawText()}.");
            }
            return new ByteTokenizer(encoding, Id("eos_token_id", 0)!.Value, Id("pad_token_id", 0)!.Value, Id("bos_token_id", null));
        }
    }

    /// <summary>The JSON form, which <see cref="Load(byte[], string)"/> reads back; save it as <see cref="FileName"/>.</summary>
    public string ToJson()
    {
        using var stream = new MemoryStream();
        using (var json = new Utf8JsonWriter(stream))
        {
            json.WriteStartObject();
            json.WriteString("type", TypeName);
            json.WriteString("encoding", TextEncoding == ByteTokenizerEncoding.Utf8 ? "utf-8" : "utf-16-le");
            if (BosId is { } bos) json.WriteNumber("bos_token_id", bos);
            json.WriteNumber("eos_token_id", EosId);
            json.WriteNumber("pad_token_id", PadId);
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }

    private protected override int Match(ReadOnlySpan<byte> bytes, out int length)
    {
        length = 1;
        return bytes[0];
    }

    private protected override ReadOnlySpan<byte> BytesOf(int id) => (uint)id < 256u ? AllBytes.AsSpan(id, 1) : default;

    // Python's codec names and their common spellings.
    private static ByteTokenizerEncoding? ParseEncoding(string name) => name.ToLowerInvariant().Replace('_', '-') switch
    {
        "utf-8" or "utf8" => ByteTokenizerEncoding.Utf8,
        "utf-16-le" or "utf-16le" or "utf16le" or "utf16-le" => ByteTokenizerEncoding.Utf16LE,
        _ => null,
    };

    private static int? CheckId(int? id, string name) =>
        id is null or (>= 0 and <= 255) ? id : throw new ArgumentOutOfRangeException(name, id, "a byte tokenizer's ids are byte values 0…255");
}
