using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Tasks;
using Microsoft.ML.Bone.Tests.Models;
using Microsoft.ML.Bone.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.Training;

/// <summary>
/// Training steps and generated tokens leave no tensors behind. Counts are this thread's live tensors (TorchSharp's
/// per-thread statistics), so other tests and the garbage collector do not disturb them.
/// </summary>
[TestClass]
public sealed class TensorLeakTests
{
    private static long Live => DisposeScopeManager.Statistics.ThreadTotalLiveCount;

    /// <summary>Records the live count at each report, synchronously (Progress&lt;T&gt; would post to another thread).</summary>
    private sealed class LiveCounts : IProgress<TrainingProgress>
    {
        public List<long> AtStep { get; } = [];
        public void Report(TrainingProgress value)
        {
            if (value.ValidationMetric is null) AtStep.Add(Live);
        }
    }

    private static PromptResponse[] Examples(int count)
    {
        var random = new Random(5);
        return Enumerable.Range(0, count).Select(_ => new PromptResponse([1, random.Next(3, 40), random.Next(3, 40)], [random.Next(3, 40), 2])).ToArray();
    }

    [TestMethod]
    [DataRow(false, AdapterKind.Bone)]
    [DataRow(true, AdapterKind.Bone)]
    [DataRow(true, AdapterKind.Bat)]
    [DataRow(false, AdapterKind.Lora)]
    public void TrainingStepsLeaveNoTensorsBehind(bool checkpointing, AdapterKind adapter)
    {
        using var scope = NewDisposeScope();
        var model = TinyLlama.Create(TinyLlama.Config());
        AdapterConfig config = adapter switch
        {
            AdapterKind.Bone => new BoneConfig { R = 4 },
            AdapterKind.Bat => new BoneConfig { R = 4, Variant = BoneVariant.Bat, GradientCheckpointing = checkpointing },
            _ => new LoraConfig { R = 2, Dropout = 0.1 },
        };
        config.TargetModules = LlamaConfig.AllProjections;
        var adapted = AdapterModel.Inject(model, config);
        model.GradientCheckpointing = checkpointing;
        var counts = new LiveCounts();
        CausalLanguageModeling.Train(model, adapted.TrainableParameters().ToList(), Examples(48), 0, 16,
            new TrainingOptions { LearningRate = 1e-3, BatchSize = 4, Epochs = 1, GradientAccumulationSteps = 2, Seed = 3 }, progress: counts);
        Assert.AreEqual(6, counts.AtStep.Count);
        // The optimizer's state appears at the first step; after that every step returns to the same count.
        CollectionAssert.AreEqual(Enumerable.Repeat(counts.AtStep[1], 5).ToArray(), counts.AtStep.Skip(1).ToArray(), $"live tensors per step: {string.Join(", ", counts.AtStep)}");
    }

    [TestMethod]
    public void GeneratedTokensLeaveNoTensorsBehind()
    {
        using var scope = NewDisposeScope();
        var model = TinyLlama.Create(TinyLlama.Config());
        AdapterModel.Inject(model, new BoneConfig { R = 4, RandomInit = true, TargetModules = LlamaConfig.AllProjections });
        int[][] prompts = [[1, 5, 9], [1, 7]];
        foreach (var options in new[] { new GenerationOptions { MaxNewTokens = 3 }, new GenerationOptions { MaxNewTokens = 12, Temperature = 0.8, TopK = 5, TopP = 0.9, RepetitionPenalty = 1.2 } })
        {
            long before = Live;
            var output = TextGeneration.Generate(model, prompts, options, [], padId: 0);
            Assert.AreEqual(options.MaxNewTokens, output[0].Count);
            Assert.AreEqual(before, Live, $"{options.MaxNewTokens} tokens");
        }
    }
}
