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

    /// <summary>SentencePiece <c>tokenizer.model</c>; null = the one in the model directory.</summary>
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
}
