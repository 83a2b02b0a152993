namespace Microsoft.ML.Bone;

/// <summary>
/// Options of <see cref="BoneCausalLMTrainer"/>: instruction-tune a LLaMA checkpoint with an adapter on
/// prompt / response pairs, and generate completions for prompts.
/// </summary>
public sealed class BoneCausalLMOptions : FineTuningOptions
{
    /// <summary>The Alpaca template (used by the MetaMathQA fine-tunes); <c>{prompt}</c> is replaced by the prompt text.</summary>
    public const string AlpacaTemplate = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{prompt}\n\n### Response:\n";

    /// <summary>Prompt (instruction) text column. Default "Prompt".</summary>
    public string PromptColumnName = "Prompt";

    /// <summary>Response text column, used for training and evaluation. Default "Response".</summary>
    public string ResponseColumnName = "Response";

    /// <summary>Generated text column added by the transformer. Default "Completion".</summary>
    public string CompletionColumnName = "Completion";

    /// <summary>Template applied to every prompt; must contain <c>{prompt}</c>. Default <see cref="AlpacaTemplate"/>.</summary>
    public string PromptTemplate = AlpacaTemplate;

    /// <summary>
    /// The tokenizer: a <c>tokenizer.model</c> file (SentencePiece or LLaMA-3 tiktoken), an RWKV World vocabulary
    /// (<c>rwkv_vocab_v20230424.txt</c>) or a <c>byte_tokenizer.json</c>, or a folder with one of them (or with
    /// vocab.json + merges.txt); null = the one in the model directory (or next to a single-file model).
    /// </summary>
    public string? TokenizerPath;

    /// <summary>Tokens per training example (prompt + response); longer prompts lose tokens from the left. Default 512.</summary>
    public int MaxSequenceLength = 512;

    /// <summary>Generation: tokens to generate at most. Default 256.</summary>
    public int MaxNewTokens = 256;

    /// <summary>Generation: 0 (default) is greedy; otherwise sampling temperature.</summary>
    public double Temperature;

    /// <summary>Generation: top-k sampling; 0 (default) = off.</summary>
    public int TopK;

    /// <summary>Generation: nucleus sampling threshold; 1 (default) = off.</summary>
    public double TopP = 1;

    /// <summary>Generation: repetition penalty; 1 (default) = off.</summary>
    public double RepetitionPenalty = 1;

    /// <summary>Generation stops at any of these strings (not included in the completion). Default none.</summary>
    public string[] StopStrings = [];

    /// <summary>Receives (row, text piece) as completions are generated.</summary>
    public Action<int, string>? OnToken;

    internal override void Validate()
    {
        base.Validate();
        foreach (var (option, value) in new[] { (nameof(PromptColumnName), PromptColumnName), (nameof(ResponseColumnName), ResponseColumnName), (nameof(CompletionColumnName), CompletionColumnName) })
            if (string.IsNullOrWhiteSpace(value)) throw new ArgumentException($"{option} must name a column.", option);
        if (PromptTemplate is null || !PromptTemplate.Contains("{prompt}", StringComparison.Ordinal)) throw new ArgumentException("PromptTemplate must contain {prompt}.", nameof(PromptTemplate));
        if (MaxSequenceLength < 8) throw new ArgumentOutOfRangeException(nameof(MaxSequenceLength), MaxSequenceLength, "MaxSequenceLength must be at least 8.");
        AtMost(nameof(MaxSequenceLength), MaxSequenceLength, Persistence.SavedModelValidation.MaxSequenceLengthLimit);
        AtMost(nameof(MaxNewTokens), MaxNewTokens, Persistence.SavedModelValidation.MaxNewTokensLimit);
        NotNegative(nameof(MaxNewTokens), MaxNewTokens);
        NotNegative(nameof(Temperature), Temperature, "0 decodes greedily");
        NotNegative(nameof(TopK), TopK, "0 turns top-k off");
        if (!(TopP > 0 && TopP <= 1)) throw new ArgumentOutOfRangeException(nameof(TopP), TopP, "TopP must be in (0, 1].");
        Positive(nameof(RepetitionPenalty), RepetitionPenalty);
        if (StopStrings is null || StopStrings.Any(string.IsNullOrEmpty)) throw new ArgumentException("StopStrings must not be null or contain empty strings.", nameof(StopStrings));
        if (TokenizerPath is not null && !File.Exists(TokenizerPath) && !Directory.Exists(TokenizerPath)) throw new FileNotFoundException($"TokenizerPath: '{TokenizerPath}' not found.");
    }
}
