namespace Microsoft.ML.Bone.Cli;

/// <summary>Loads a model zip for a command and says so plainly when the zip is of the other kind.</summary>
internal static class CliModels
{
    public static BoneCausalLMTransformer CausalLM(MLContext ml, string zip)
    {
        ITransformer loaded = ml.Bone.LoadModel(zip, out _);
        return Find<BoneCausalLMTransformer>(loaded)
            ?? throw new InvalidDataException($"{zip}: is not a causal language model zip (it holds {Describe(loaded)}); `bone lm` takes a zip from `bone lm train`, `bone classify` one from `bone classify train`.");
    }

    public static ITransformer Classifier(MLContext ml, string zip, out DataViewSchema inputSchema, string? baseModel)
    {
        ITransformer loaded = ml.Bone.LoadModel(zip, out inputSchema, baseModel);
        if (Find<BoneTextClassificationTransformer>(loaded) is null)
            throw new InvalidDataException($"{zip}: is not a text classification model zip (it holds {Describe(loaded)}); `bone classify` takes a zip from `bone classify train`, `bone lm` one from `bone lm train`.");
        return loaded;
    }

    private static T? Find<T>(ITransformer model) where T : class, ITransformer =>
        model as T ?? (model as IEnumerable<ITransformer>)?.Select(t => Find<T>(t)).FirstOrDefault(t => t is not null);

    private static string Describe(ITransformer model) => model is BoneCausalLMTransformer ? "a causal language model"
        : Find<BoneTextClassificationTransformer>(model) is not null ? "a text classifier" : $"a {model.GetType().Name}";
}
