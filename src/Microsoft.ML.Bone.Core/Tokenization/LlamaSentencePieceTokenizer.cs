using Microsoft.ML.Tokenizers;

namespace Microsoft.ML.Bone.Tokenization;

/// <summary>Turns text into causal-LM token ids and back.</summary>
public interface ICausalTokenizer
{
    /// <summary>Beginning-of-sequence id, or null for models that use none (Qwen2).</summary>
    int? BosId { get; }
    /// <summary>End-of-sequence id appended to training responses.</summary>
    int EosId { get; }
    /// <summary>Id used for padding (never attended to).</summary>
    int PadId { get; }
    /// <summary>One more than the largest id the tokenizer can produce (the model's vocabulary must be at least this).</summary>
    int IdLimit { get; }
    /// <summary>Ids of <paramref name="text"/>, with BOS first when <paramref name="addBos"/> and the model has one.</summary>
    int[] Encode(string text, bool addBos);
    /// <summary>Text of <paramref name="ids"/> (special tokens dropped).</summary>
    string Decode(IEnumerable<int> ids);
}

/// <summary>LLaMA-1/2's SentencePiece BPE (<c>tokenizer.model</c>, byte fallback) through Microsoft.ML.Tokenizers.</summary>
public sealed class LlamaSentencePieceTokenizer : ICausalTokenizer
{
    private readonly LlamaTokenizer _tokenizer;

    private LlamaSentencePieceTokenizer(LlamaTokenizer tokenizer) => _tokenizer = tokenizer;

    /// <inheritdoc/>
    public int? BosId => _tokenizer.BeginningOfSentenceId;
    /// <inheritdoc/>
    public int EosId => _tokenizer.EndOfSentenceId;
    /// <summary>LLaMA has no pad token; &lt;unk&gt; (0) pads, as common LLaMA fine-tuning set-ups do.</summary>
    public int PadId => _tokenizer.UnknownId;
    /// <inheritdoc/>
    public int IdLimit => _tokenizer.Vocabulary.Values.Max() + 1;

    /// <summary>Loads <c>tokenizer.model</c> from a model directory (or the file itself).</summary>
    public static LlamaSentencePieceTokenizer Load(string directoryOrFile)
    {
        string path = Directory.Exists(directoryOrFile) ? Path.Combine(directoryOrFile, "tokenizer.model") : directoryOrFile;
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: not found; LLaMA-2 models need a SentencePiece tokenizer.model.", path);
        return Load(IO.InputFile.ReadAllBytes(path), path);
    }

    /// <summary>Loads a SentencePiece model's bytes; <paramref name="source"/> names it in errors.</summary>
    public static LlamaSentencePieceTokenizer Load(byte[] content, string source)
    {
        try
        {
            using var stream = new MemoryStream(content);
            return new LlamaSentencePieceTokenizer(LlamaTokenizer.Create(stream, addBeginOfSentence: false, addEndOfSentence: false));
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or FormatException or Google.Protobuf.InvalidProtocolBufferException)
        {
            throw new InvalidDataException($"{source}: not a SentencePiece model ({e.Message}).", e);
        }
    }

    /// <inheritdoc/>
    public int[] Encode(string text, bool addBos)
    {
        var ids = _tokenizer.EncodeToIds(text);
        return addBos ? [_tokenizer.BeginningOfSentenceId, .. ids] : [.. ids];
    }

    /// <inheritdoc/>
    public string Decode(IEnumerable<int> ids) => _tokenizer.Decode(ids, considerSpecialTokens: false);
}
