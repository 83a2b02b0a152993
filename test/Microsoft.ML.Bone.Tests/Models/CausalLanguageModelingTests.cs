using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Tasks;
using Microsoft.ML.Bone.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.Models;

[TestClass]
public sealed class CausalLanguageModelingTests
{
    [TestMethod]
    public void LossCoversResponseTokensOnlyShiftedOnce()
    {
        using var scope = NewDisposeScope();
        var model = TinyLlama.Create(TinyLlama.Config());
        PromptResponse[] examples = [new([1, 5, 9], [12, 7, 2]), new([1, 3], [30, 2])];
        var (ids, mask, labels) = CausalLanguageModeling.Batch(examples, [0, 1], padId: 0, maxLength: 16);
        CollectionAssert.AreEqual(new long[] { -100, -100, -100, 12, 7, 2, -100, -100, 30, 2, -100, -100 }, labels.data<long>().ToArray());
        CollectionAssert.AreEqual(new long[] { 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 }, mask.data<long>().ToArray());

        using var noGrad = no_grad();
        Tensor logits = model.Forward(ids, mask);
        // By hand: −log p(next token) at each position whose next token is a response token.
        Tensor logProbabilities = logits.log_softmax(-1);
        double sum = 0;
        int count = 0;
        foreach (var (row, position, token) in new[] { (0, 2, 12), (0, 3, 7), (0, 4, 2), (1, 1, 30), (1, 2, 2) })
        {
            sum -= logProbabilities[row, position, token].item<float>();
            count++;
        }
        Assert.AreEqual(sum / count, CausalLanguageModeling.Loss(logits, labels).item<float>(), 1e-5);
        var (mean, tokens) = CausalLanguageModeling.Evaluate(model, examples, 0, 16, batchSize: 1);
        Assert.AreEqual(5, tokens);
        Assert.AreEqual(sum / count, mean, 1e-5);
    }

    [TestMethod]
    public void OverlongExamplesKeepBosAndTheResponse()
    {
        using var scope = NewDisposeScope();
        var (ids, _, labels) = CausalLanguageModeling.Batch([new PromptResponse([1, 10, 11, 12, 13], [20, 21, 2])], [0], 0, maxLength: 6);
        CollectionAssert.AreEqual(new long[] { 1, 12, 13, 20, 21, 2 }, ids.data<long>().ToArray());
        CollectionAssert.AreEqual(new long[] { -100, -100, -100, 20, 21, 2 }, labels.data<long>().ToArray());
    }

    [TestMethod]
    public void BoneFineTuningOfStories260KLowersTheLoss()
    {
        using var scope = NewDisposeScope();
        var model = Llama2cCheckpoint.Load(SharedData.Path("models", "stories260K", "stories260K.bin"));
        // A token-level task the model has never seen: answer a prompt of two tokens with those tokens reversed.
        var random = new Random(3);
        PromptResponse Example()
        {
            int a = random.Next(3, 512), b = random.Next(3, 512);
            return new PromptResponse([1, a, b, 13], [b, a, 2]);
        }
        PromptResponse[] train = Enumerable.Range(0, 256).Select(_ => Example()).ToArray(), held = Enumerable.Range(0, 64).Select(_ => Example()).ToArray();
        double before = CausalLanguageModeling.Evaluate(model, held, 0, 16, 32).MeanLoss;
        var adapted = AdapterModel.Inject(model, new BoneConfig { R = 16, TargetModules = LlamaConfig.AllProjections });
        var result = CausalLanguageModeling.Train(model, adapted.TrainableParameters().ToList(), train, 0, 16,
            new TrainingOptions { LearningRate = 1e-2, BatchSize = 16, Epochs = 8, Seed = 2 }, validation: held);
        double after = CausalLanguageModeling.Evaluate(model, held, 0, 16, 32).MeanLoss;
        Console.WriteLine($"held-out response loss {before:F3} -> {after:F3} ({result.StepsRun} steps)");
        Assert.IsTrue(after < before - 0.5, $"held-out loss {before:F3} -> {after:F3}");
    }
}
