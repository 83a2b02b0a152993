using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Tasks;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.Models;

[TestClass]
public sealed class TextGenerationTests
{
    private static readonly int[] NoEos = [];

    /// <summary>Greedy decoding that recomputes the whole sequence at every step (no cache): the reference.</summary>
    internal static List<int> GreedyWithoutCache(LlamaForCausalLM model, int[] prompt, int maxNewTokens, IReadOnlyCollection<int> endOfSequence)
    {
        var sequence = prompt.Select(t => (long)t).ToList();
        var generated = new List<int>();
        using var noGrad = no_grad();
        for (int i = 0; i < maxNewTokens; i++)
        {
            using var scope = NewDisposeScope();
            int id = (int)model.call(tensor(sequence.ToArray()).unsqueeze(0))[0, -1].argmax().item<long>();
            if (endOfSequence.Contains(id)) break;
            generated.Add(id);
            sequence.Add(id);
        }
        return generated;
    }

    private static LlamaForCausalLM Stories() => Llama2cCheckpoint.Load(SharedData.Path("models", "stories260K", "stories260K.bin"));

    [TestMethod]
    public void CachedGreedyEqualsUncachedGreedyTokenForToken()
    {
        using var scope = NewDisposeScope();
        foreach (var model in new[] { TinyLlama.Create(TinyLlama.Config(new RopeScaling("llama3", 4, 1, 4, 8))), Stories() })
        {
            int[] prompt = [1, 13, 27, 5];
            var cached = TextGeneration.Generate(model, [prompt], new GenerationOptions { MaxNewTokens = 30 }, NoEos, padId: 0)[0];
            var uncached = GreedyWithoutCache(model, prompt, 30, NoEos);
            CollectionAssert.AreEqual(uncached, cached);
        }
    }

    [TestMethod]
    public void LeftPaddedBatchEqualsOnePromptAtATime()
    {
        using var scope = NewDisposeScope();
        var model = Stories();
        int[][] prompts = [[1], [1, 461, 461, 401], [1, 300, 13]];
        var options = new GenerationOptions { MaxNewTokens = 25 };
        var batched = TextGeneration.Generate(model, prompts, options, NoEos, padId: 0);
        for (int i = 0; i < prompts.Length; i++)
            CollectionAssert.AreEqual(TextGeneration.Generate(model, [prompts[i]], options, NoEos, padId: 0)[0], batched[i], $"prompt {i}");
    }

    [TestMethod]
    public void SamplingRulesBehave()
    {
        using var scope = NewDisposeScope();
        var model = Stories();
        int[] prompt = [1];
        var greedy = TextGeneration.Generate(model, [prompt], new GenerationOptions { MaxNewTokens = 20 }, NoEos, 0)[0];
        CollectionAssert.AreEqual(greedy, TextGeneration.Generate(model, [prompt], new GenerationOptions { MaxNewTokens = 20, Temperature = 1.5, TopK = 1 }, NoEos, 0)[0], "top-k 1 is greedy");
        CollectionAssert.AreEqual(greedy, TextGeneration.Generate(model, [prompt], new GenerationOptions { MaxNewTokens = 20, Temperature = 1.0, TopP = 1e-6 }, NoEos, 0)[0], "a tiny top-p keeps only the best token");
        var sampled = new GenerationOptions { MaxNewTokens = 20, Temperature = 1.0, Seed = 5 };
        var a = TextGeneration.Generate(model, [prompt], sampled, NoEos, 0)[0];
        CollectionAssert.AreEqual(a, TextGeneration.Generate(model, [prompt], sampled, NoEos, 0)[0], "same seed, same sample");
        CollectionAssert.AreNotEqual(greedy, a, "sampling at temperature 1 departs from greedy");

        int Repeats(List<int> ids) => ids.Zip(ids.Skip(1)).Count(p => p.First == p.Second);
        var penalised = TextGeneration.Generate(model, [prompt], new GenerationOptions { MaxNewTokens = 20, RepetitionPenalty = 5 }, NoEos, 0)[0];
        Assert.IsTrue(Repeats(penalised) < Repeats(greedy), $"repetition penalty: {Repeats(penalised)} vs {Repeats(greedy)} immediate repeats");
    }

    [TestMethod]
    public void StopsAtEndOfSequenceOrWhenToldAndStreamsEveryToken()
    {
        using var scope = NewDisposeScope();
        var model = Stories();
        var greedy = TextGeneration.Generate(model, [[1]], new GenerationOptions { MaxNewTokens = 20 }, NoEos, 0)[0];
        // End at the first 401 (an id the greedy run produces at step 3).
        var atEos = TextGeneration.Generate(model, [[1]], new GenerationOptions { MaxNewTokens = 20 }, [401], 0)[0];
        CollectionAssert.AreEqual(greedy.TakeWhile(t => t != 401).ToArray(), atEos);
        var streamed = new List<int>();
        var stopped = TextGeneration.Generate(model, [[1]], new GenerationOptions { MaxNewTokens = 20 }, NoEos, 0,
            shouldStop: (_, ids) => ids.Count == 7, onToken: (_, id) => streamed.Add(id))[0];
        CollectionAssert.AreEqual(greedy.Take(7).ToArray(), stopped);
        CollectionAssert.AreEqual(stopped, streamed);
    }
}
