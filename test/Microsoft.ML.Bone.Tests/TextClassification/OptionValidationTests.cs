namespace Microsoft.ML.Bone.Tests.TextClassification;

/// <summary>Options are checked when the estimator is created, and errors use the ML.NET option names.</summary>
[TestClass]
public sealed class OptionValidationTests
{
    private static string _dir = "";
    private static string _model = "";

    [ClassInitialize]
    public static void CreateModel(TestContext _)
    {
        _dir = Directory.CreateTempSubdirectory("bone-options-").FullName;
        _model = GlueData.TinyModel(Path.Combine(_dir, "tiny"), hidden: 16);
    }

    [ClassCleanup]
    public static void Cleanup() => Directory.Delete(_dir, recursive: true);

    private static BoneTextClassificationOptions Options() => new() { ModelPath = _model, Rank = 4, MaxEpochs = 1, BatchSize = 4, MaxSequenceLength = 16 };

    public static IEnumerable<object[]> BadOptions =>
    [
        [(Action<BoneTextClassificationOptions>)(o => o.MaxEpochs = 0), "MaxEpochs"],
        [(Action<BoneTextClassificationOptions>)(o => o.BatchSize = -1), "BatchSize"],
        // Beyond what a saved model's record may hold: refused before training, not when the zip loads.
        [(Action<BoneTextClassificationOptions>)(o => o.BatchSize = 100_000), "BatchSize"],
        [(Action<BoneTextClassificationOptions>)(o => o.Threads = 5000), "Threads"],
        [(Action<BoneTextClassificationOptions>)(o => o.MaxSequenceLength = 2_000_000), "MaxSequenceLength"],
        [(Action<BoneTextClassificationOptions>)(o => o.GradientAccumulationSteps = 0), "GradientAccumulationSteps"],
        [(Action<BoneTextClassificationOptions>)(o => o.WarmupRatio = 1.5), "WarmupRatio"],
        [(Action<BoneTextClassificationOptions>)(o => o.LearningRate = -1), "LearningRate"],
        [(Action<BoneTextClassificationOptions>)(o => o.MaxSteps = -2), "MaxSteps"],
        [(Action<BoneTextClassificationOptions>)(o => o.PissaIterations = 2), "PissaIterations"],
        [(Action<BoneTextClassificationOptions>)(o => o.LabelColumnName = " "), "LabelColumnName"],
        [(Action<BoneTextClassificationOptions>)(o => o.ModelPath = ""), "ModelPath"],
    ];

    [TestMethod]
    [DynamicData(nameof(BadOptions))]
    public void OptionsAreCheckedWhenTheEstimatorIsCreatedWithTheirMlNetNames(Action<BoneTextClassificationOptions> spoil, string option)
    {
        var options = Options();
        spoil(options);
        var e = Assert.Throws<ArgumentException>(() => new MLContext().Bone.TextClassification(options));
        Assert.AreEqual(option, e.ParamName);
        StringAssert.Contains(e.Message, option);
    }

    [TestMethod]
    public void AMissingMlNetMemberIsOneClearError()
    {
        var e = Assert.ThrowsExactly<InvalidOperationException>(() => Microsoft.ML.Bone.Persistence.MlNetInternals.CheckMembers(typeof(object).Assembly));
        StringAssert.Contains(e.Message, "Microsoft.ML.VersionInfo");
        StringAssert.Contains(e.Message, "Microsoft.ML 5.0.1");
    }

    public static IEnumerable<object[]> BadCausalOptions =>
    [
        [(Action<BoneCausalLMOptions>)(o => o.MaxEpochs = 0), "MaxEpochs"],
        [(Action<BoneCausalLMOptions>)(o => o.TopP = 0), "TopP"],
        [(Action<BoneCausalLMOptions>)(o => o.Temperature = -1), "Temperature"],
        [(Action<BoneCausalLMOptions>)(o => o.PromptTemplate = "no placeholder"), "PromptTemplate"],
        [(Action<BoneCausalLMOptions>)(o => o.UseRsLora = true), "UseRsLora"],
    ];

    [TestMethod]
    [DynamicData(nameof(BadCausalOptions))]
    public void CausalLMOptionsAreCheckedWhenTheEstimatorIsCreated(Action<BoneCausalLMOptions> spoil, string option)
    {
        var options = new BoneCausalLMOptions { ModelPath = _model };
        spoil(options);
        var e = Assert.Throws<ArgumentException>(() => new MLContext().Bone.CausalLM(options));
        Assert.AreEqual(option, e.ParamName);
    }
}
