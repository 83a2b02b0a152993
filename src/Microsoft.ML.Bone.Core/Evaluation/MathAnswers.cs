using System.Globalization;
using System.Text.RegularExpressions;

namespace Microsoft.ML.Bone.Evaluation;

/// <summary>
/// The final number of a GSM8K-style answer: after <c>####</c>, after "The answer is", or else the last number in the
/// text; thousands separators, currency and unit signs are stripped. Exact match compares the numbers.
/// </summary>
public static partial class MathAnswers
{
    [GeneratedRegex(@"####\s*(?<n>-?[\d,]*\.?\d+)")]
    private static partial Regex Hashes();

    [GeneratedRegex(@"[Tt]he answer is:?\s*\$?\s*(?<n>-?[\d,]*\.?\d+)")]
    private static partial Regex AnswerIs();

    [GeneratedRegex(@"-?\d[\d,]*\.?\d*|-?\.\d+")]
    private static partial Regex AnyNumber();

    /// <summary>The final number, or null when the text has none.</summary>
    public static decimal? FinalNumber(string text)
    {
        Match m = Hashes().Match(text);
        if (!m.Success) m = AnswerIs().Match(text);
        string? raw = m.Success ? m.Groups["n"].Value : AnyNumber().Matches(text).LastOrDefault()?.Value;
        if (raw is null) return null;
        raw = raw.Replace(",", "", StringComparison.Ordinal).TrimEnd('.');
        return decimal.TryParse(raw, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out decimal value) ? value : null;
    }

    /// <summary>True when both texts have a final number and the numbers are equal.</summary>
    public static bool ExactMatch(string predicted, string reference) =>
        FinalNumber(predicted) is { } p && FinalNumber(reference) is { } r && p == r;
}
