namespace Microsoft.ML.Bone;

/// <summary>
/// Causal-LM metrics: mean loss and perplexity of <c>Response</c> given <c>Prompt</c> (response tokens only), and, when
/// completions were generated, exact-match accuracy of the final number (GSM8K's <c>#### 42</c> and "The answer is: 42").
/// </summary>
public sealed record CausalLMEvaluation(int Count, double MeanLoss, double Perplexity, long ResponseTokens, double? AnswerAccuracy)
{
    /// <inheritdoc/>
    public override string ToString() =>
        $"n = {Count}, loss {MeanLoss:F4}, perplexity {Perplexity:F2} over {ResponseTokens} response tokens" + (AnswerAccuracy is { } a ? $", answer accuracy {a:F4}" : "");
}
