namespace Microsoft.ML.Bone.Tokenization;

/// <summary>Finds and opens the tokenizer of a causal LM by the files it has.</summary>
public static class CausalTokenizers
{
    /// <summary>Every file a causal-LM tokenizer may consist of.</summary>
    public static readonly IReadOnlyList<string> FileNames = ["tokenizer.model", "vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json", RwkvWorldTokenizer.FileName, ByteTokenizer.FileName];

    /// <summary>
    /// The tokenizer files for a model: those in <paramref name="tokenizerPath"/> (a file or a folder) when given, else
    /// in the model folder (or next to a single-file model). Throws, naming the folder, when none is there. A file given
    /// as <paramref name="tokenizerPath"/> is told apart by its name: an RWKV vocabulary (<c>rwkv_vocab_*.txt</c>, kept
    /// as <see cref="RwkvWorldTokenizer.FileName"/>), <see cref="ByteTokenizer.FileName"/>, or else <c>tokenizer.model</c>.
    /// </summary>
    public static TokenizerFiles Locate(string modelPath, string? tokenizerPath)
    {
        if (tokenizerPath is not null && File.Exists(tokenizerPath))
            return new TokenizerFiles(new Dictionary<string, byte[]> { [KindOf(tokenizerPath)] = IO.InputFile.ReadAllBytes(tokenizerPath) }, Path.GetDirectoryName(Path.GetFullPath(tokenizerPath))!);
        string directory = tokenizerPath ?? (Directory.Exists(modelPath) ? modelPath : Path.GetDirectoryName(Path.GetFullPath(modelPath))!);
        if (!Directory.Exists(directory)) throw new DirectoryNotFoundException($"{directory}: tokenizer folder not found.");
        TokenizerFiles files = TokenizerFiles.FromDirectory(directory, FileNames);
        if (!files.Has("tokenizer.model") && !(files.Has("vocab.json") && files.Has("merges.txt")) && !files.Has(RwkvWorldTokenizer.FileName) && !files.Has(ByteTokenizer.FileName))
            throw new FileNotFoundException($"{directory}: no tokenizer found; a causal LM needs tokenizer.model (SentencePiece or tiktoken), vocab.json + merges.txt (byte-level BPE), {RwkvWorldTokenizer.FileName} (RWKV World) or {ByteTokenizer.FileName} (one token per byte). Set TokenizerPath to point at it.");
        return files;
    }

    /// <summary>
    /// Opens <paramref name="files"/>: <c>tokenizer.model</c> as LLaMA-3 tiktoken or SentencePiece (told apart by
    /// content), <see cref="RwkvWorldTokenizer.FileName"/> as the RWKV World tokenizer (its ids are fixed: 0 ends text
    /// and pads, no BOS), <see cref="ByteTokenizer.FileName"/> as a byte tokenizer (ids from that file), otherwise
    /// <c>vocab.json</c> + <c>merges.txt</c> as a byte-level BPE with the model's <paramref name="bos"/> /
    /// <paramref name="eos"/> ids.
    /// </summary>
    public static ICausalTokenizer Load(TokenizerFiles files, int? bos, int? eos)
    {
        if (files.Has("tokenizer.model"))
        {
            byte[] model = files.Bytes("tokenizer.model");
            string where = files.Describe("tokenizer.model");
            return Llama3TiktokenTokenizer.IsTiktoken(model) ? Llama3TiktokenTokenizer.Load(model, where) : LlamaSentencePieceTokenizer.Load(model, where);
        }
        if (files.Has(RwkvWorldTokenizer.FileName))
            return RwkvWorldTokenizer.Load(files.Bytes(RwkvWorldTokenizer.FileName), files.Describe(RwkvWorldTokenizer.FileName));
        if (files.Has(ByteTokenizer.FileName))
            return ByteTokenizer.Load(files.Bytes(ByteTokenizer.FileName), files.Describe(ByteTokenizer.FileName));
        return ByteLevelBpeTokenizer.Load(files, bos, eos ?? throw new InvalidDataException($"{files.Source}: a byte-level BPE tokenizer needs the model's eos_token_id, and the model's config gives none."));
    }

    private static string KindOf(string path) => Path.GetFileName(path) switch
    {
        "vocab.json" or "merges.txt" => throw new ArgumentException($"TokenizerPath: '{path}' is one of two files; point at the folder holding vocab.json and merges.txt."),
        ByteTokenizer.FileName => ByteTokenizer.FileName,
        // Any RWKV vocabulary version is stored under the one name that Load recognises.
        string name when name.StartsWith("rwkv_vocab", StringComparison.Ordinal) && name.EndsWith(".txt", StringComparison.Ordinal) => RwkvWorldTokenizer.FileName,
        _ => "tokenizer.model",
    };
}
