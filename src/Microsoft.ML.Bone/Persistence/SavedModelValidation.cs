using Microsoft.ML.Bone.Data;

namespace Microsoft.ML.Bone.Persistence;

/// <summary>
/// Field-by-field checks of a saved-model record read from a zip: every size within bounds, every name usable,
/// the parts consistent with each other. A zip edited by hand (or damaged) fails here, naming the field, before
/// anything is allocated from it.
/// </summary>
internal static class SavedModelValidation
{
    public const int MaxSequenceLengthLimit = 1 << 20;
    public const int MaxBatchSize = 1 << 16;
    public const int MaxThreads = 4096;
    public const int MaxLabels = 1 << 20;
    public const int MaxNewTokensLimit = 1 << 20;

    public static void Check(SavedModel m, string source)
    {
        void Fail(string field, string why) => throw new InvalidDataException($"{source}: the saved setting {field} {why}.");
        void Name(string field, string? value)
        {
            if (string.IsNullOrWhiteSpace(value)) Fail(field, "is empty");
            if (value!.Length > 4096 || value.Contains('\0')) Fail(field, "is not a usable name");
        }
        void Range(string field, long value, long min, long max)
        {
            if (value < min || value > max) Fail(field, $"is {value}, outside [{min}, {max}]");
        }
        void Defined<T>(string field, T value) where T : struct, Enum
        {
            if (!Enum.IsDefined(value)) Fail(field, $"is {value}, not a known value");
        }

        BaseModelRecord b = m.Base;
        Name("Base.Architecture", b.Architecture);
        Name("Base.Path", b.Path);
        Defined("Base.DType", b.DType);
        CheckFiles("Base.Files", b.Files, Fail, allowEmpty: false);
        CheckFiles("Entries", m.Entries, Fail, allowEmpty: true);

        Defined("Adapter", m.Adapter);
        bool full = m.Adapter == AdapterKind.FullFineTuning;
        if (full != m.AdapterConfigJson is null) Fail("AdapterConfigJson", full ? "is present for a fully fine-tuned model" : "is missing");
        if (full && !b.Embedded) Fail("Base.Embedded", "is false for a fully fine-tuned model, whose weights must be in the zip");
        if (m.AdapterConfigJson is { Length: > 1 << 20 }) Fail("AdapterConfigJson", "is larger than 1 MiB");
        Range("MaxSequenceLength", m.MaxSequenceLength, 1, MaxSequenceLengthLimit);
        Range("BatchSize", m.BatchSize, 1, MaxBatchSize);
        Range("Threads", m.Threads, 0, MaxThreads);

        if ((m.TextClassification is null) == (m.CausalLM is null)) Fail("TextClassification / CausalLM", "name no task (or two)");
        if (m.TextClassification is { } tc)
        {
            Name("TextClassification.Sentence1", tc.Sentence1);
            if (tc.Sentence2 is not null) Name("TextClassification.Sentence2", tc.Sentence2);
            Name("TextClassification.Label", tc.Label);
            Name("TextClassification.Score", tc.Score);
            Name("TextClassification.PredictedLabel", tc.PredictedLabel);
            if (tc.IsRegression)
            {
                if (tc.LabelNames is not null || tc.LabelValueType is not null) Fail("TextClassification.LabelNames", "is present for a regression model");
            }
            else
            {
                if (tc.LabelNames is null) Fail("TextClassification.LabelNames", "is missing for a classifier");
                Range("TextClassification.LabelNames (count)", tc.LabelNames!.Length, 1, MaxLabels);
                if (tc.LabelNames.Any(n => n is null)) Fail("TextClassification.LabelNames", "contains null");
                if (tc.LabelNames.Distinct(StringComparer.Ordinal).Count() != tc.LabelNames.Length) Fail("TextClassification.LabelNames", "has a name twice");
                if (tc.LabelValueType is null || !LabelValues.IsKnownValueType(tc.LabelValueType)) Fail("TextClassification.LabelValueType", $"'{tc.LabelValueType}' is not a label type");
            }
        }
        if (m.CausalLM is { } lm)
        {
            Name("CausalLM.Prompt", lm.Prompt);
            Name("CausalLM.Response", lm.Response);
            Name("CausalLM.Completion", lm.Completion);
            if (!lm.PromptTemplate.Contains("{prompt}", StringComparison.Ordinal)) Fail("CausalLM.PromptTemplate", "does not contain {prompt}");
            if (lm.PromptTemplate.Length > 1 << 16) Fail("CausalLM.PromptTemplate", "is longer than 64 KiB");
            try { lm.Generation.Validate(); }
            catch (ArgumentOutOfRangeException e) { Fail($"CausalLM.Generation.{e.ParamName}", $"is {e.ActualValue}, which is invalid ({e.Message.Split(Environment.NewLine)[0]})"); }
            Range("CausalLM.Generation.MaxNewTokens", lm.Generation.MaxNewTokens, 0, MaxNewTokensLimit);
            if (!double.IsFinite(lm.Generation.Temperature)) Fail("CausalLM.Generation.Temperature", "is not finite");
            if (!double.IsFinite(lm.Generation.RepetitionPenalty)) Fail("CausalLM.Generation.RepetitionPenalty", "is not finite");
            Range("CausalLM.StopStrings (count)", lm.StopStrings.Length, 0, 1024);
            if (lm.StopStrings.Any(string.IsNullOrEmpty)) Fail("CausalLM.StopStrings", "contains an empty string");
        }
    }

    private static void CheckFiles(string field, Dictionary<string, FileIdentity> files, Action<string, string> fail, bool allowEmpty)
    {
        if (files.Count == 0 && !allowEmpty) fail(field, "lists no file");
        if (files.Count > 100_000) fail(field, $"lists {files.Count} files");
        foreach (var (name, identity) in files)
        {
            if (string.IsNullOrEmpty(name) || name.Contains('/') || name.Contains('\\') || name.Contains('\0') || name is "." or "..")
                fail($"{field}['{name}']", "is not a file name");
            if (identity is null) { fail($"{field}['{name}']", "is null"); return; }
            if (identity.Size < 0) fail($"{field}['{name}'].Size", $"is {identity.Size}");
            if (identity.Sha256 is not { Length: 64 } digest || !digest.All(char.IsAsciiHexDigitLower))
                fail($"{field}['{name}'].Sha256", "is not a SHA-256 in lowercase hex");
        }
    }
}
