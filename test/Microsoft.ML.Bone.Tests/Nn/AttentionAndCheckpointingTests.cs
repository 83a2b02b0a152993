using Microsoft.ML.Bone.Models.Llama;
using Microsoft.ML.Bone.Models.Roberta;
using Microsoft.ML.Bone.Nn;
using Microsoft.ML.Bone.Tests.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static Microsoft.ML.Bone.Tests.Adapters.Fixtures;

namespace Microsoft.ML.Bone.Tests.Nn;

/// <summary>Fused attention against the eager reference, and per-layer gradient checkpointing against plain backward.</summary>
[TestClass]
public sealed class AttentionAndCheckpointingTests
{
    private string _dir = "";

    [TestInitialize]
    public void Init() => _dir = Directory.CreateTempSubdirectory("bone-nn-").FullName;

    [TestCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);

    private static Tensor Ids(long[,] ids) => tensor(ids.Cast<long>().ToArray(), [ids.GetLength(0), ids.GetLength(1)]);

    [TestMethod]
    public void LlamaSdpaEqualsEagerWithPaddingWindowsGqaAndTheCache()
    {
        using var scope = NewDisposeScope();
        var model = TinyLlama.Create(TinyLlama.Config() with { ModelType = "mistral", SlidingWindow = 3 });
        long[,] ids = { { 0, 0, 1, 5, 17, 33, 8 }, { 1, 9, 9, 21, 4, 30, 12 } };
        Tensor mask = tensor(new long[] { 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 }, [2, 7]);
        Tensor positions = tensor(new long[] { 1, 1, 0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 5, 6 }, [2, 7]);
        // Pad queries see no key; their outputs are never used (and differ with the number of keys), so they are not compared.
        Tensor real = mask.unsqueeze(-1).to(ScalarType.Float32);
        using var noGrad = no_grad();
        Tensor Run(AttentionImplementation implementation, Tensor? m, Tensor? p)
        {
            model.Attention = implementation;
            return model.Forward(Ids(ids), m, p) * real;
        }
        AssertClose(Run(AttentionImplementation.Eager, null, null), Run(AttentionImplementation.Sdpa, null, null), 1e-5, "causal, no mask");
        AssertClose(Run(AttentionImplementation.Eager, mask, positions), Run(AttentionImplementation.Sdpa, mask, positions), 1e-5, "left padding");
        foreach (var implementation in new[] { AttentionImplementation.Eager, AttentionImplementation.Sdpa })
        {
            model.Attention = implementation;
            using var cache = model.NewCache();
            Tensor prefill = model.Forward(Ids(ids).narrow(1, 0, 4), mask.narrow(1, 0, 4), positions.narrow(1, 0, 4), cache);
            Tensor steps = cat(Enumerable.Range(4, 3).Select(t => model.Forward(Ids(ids).narrow(1, t, 1), mask.narrow(1, 0, t + 1), positions.narrow(1, t, 1), cache)).ToArray(), 1);
            model.Attention = AttentionImplementation.Eager;
            AssertClose(Run(AttentionImplementation.Eager, mask, positions), cat([prefill, steps], 1) * real, 1e-5, $"{implementation} with the cache");
        }
    }

    [TestMethod]
    public void RobertaSdpaEqualsEagerWithPadding()
    {
        using var scope = NewDisposeScope();
        var model = TinyRoberta.Create(_dir);
        Tensor ids = Ids(new long[,] { { 0, 7, 8, 9, 2, 1, 1 }, { 0, 11, 12, 13, 14, 15, 2 } });
        Tensor mask = ids.ne(1).to(ScalarType.Int64);
        using var noGrad = no_grad();
        model.Attention = AttentionImplementation.Eager;
        Tensor eager = model.Logits(ids, mask);
        model.Attention = AttentionImplementation.Sdpa;
        AssertClose(eager, model.Logits(ids, mask), 1e-5, "roberta");
    }

    // Gradients of every trainable parameter after one backward pass, in model order.
    private static List<Tensor> Gradients(nn.Module model, Func<Tensor> loss)
    {
        foreach (var p in model.parameters()) p.grad?.zero_();
        loss().backward();
        return model.parameters().Where(p => p.requires_grad).Select(p => p.grad!.clone()).ToList();
    }

    [TestMethod]
    public void LlamaGradientCheckpointingGivesTheSameGradients()
    {
        using var scope = NewDisposeScope();
        var model = TinyLlama.Create(TinyLlama.Config());
        var adapted = AdapterModel.Inject(model, new BoneConfig { R = 4, RandomInit = true, TargetModules = LlamaConfig.AllProjections });
        Assert.IsTrue(adapted.TrainableParameters().Any());
        Tensor ids = Ids(new long[,] { { 1, 5, 17, 33, 8, 2, 39 }, { 1, 9, 9, 21, 4, 30, 12 } });
        Tensor mask = tensor(new long[] { 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1 }, [2, 7]);
        model.train();
        Tensor Loss() => model.Forward(ids, mask).pow(2).mean();
        var plain = Gradients(model, Loss);
        model.GradientCheckpointing = true;
        var checkpointed = Gradients(model, Loss);
        Assert.AreEqual(plain.Count, checkpointed.Count);
        for (int i = 0; i < plain.Count; i++) AssertClose(plain[i], checkpointed[i], 1e-6, $"gradient {i}");
        Assert.IsTrue(plain.All(g => g.abs().sum().item<float>() > 0), "every adapter gets a gradient");
    }

    [TestMethod]
    public void CheckpointedBackwardDoesNotKeepEachLayersGradientsUntilTheStepEnds()
    {
        // The handles of each block's saved input, incoming gradient and returned gradients used to land in the
        // step's dispose scope, keeping them alive (a hidden state and its gradient per layer) until the step ended.
        long Growth(int depth)
        {
            using var scope = NewDisposeScope();
            var blocks = Enumerable.Range(0, depth).Select(_ => nn.Linear(16, 16)).ToList();
            Tensor h = randn(64, 16).requires_grad_(true);
            foreach (var block in blocks) h = Microsoft.ML.Bone.Nn.GradientCheckpoint.Run(block, h, x => block.call(x).tanh());
            Tensor loss = h.sum();
            long before = ScopeBytes(scope);
            loss.backward();
            return ScopeBytes(scope) - before;
        }
        long shallow = Growth(2), deep = Growth(8);
        long oneHidden = 64 * 16 * sizeof(float);
        Assert.IsTrue(deep - shallow < oneHidden, $"backward kept {deep - shallow} more bytes for 6 more layers (one hidden state is {oneHidden})");
    }

    [TestMethod]
    public void RobertaGradientCheckpointingReplaysDropoutAndGivesTheSameGradients()
    {
        using var scope = NewDisposeScope();
        var model = TinyRoberta.Create(_dir);
        Assert.IsTrue(model.Config.HiddenDropoutProb > 0, "dropout is on, so the masks must be replayed");
        AdapterModel.Inject(model, new LoraConfig { R = 2, TargetModules = RobertaForSequenceClassification.AllProjections, ModulesToSave = ["classifier"], Dropout = 0.2 });
        Tensor ids = Ids(new long[,] { { 0, 7, 8, 9, 2, 1, 1 }, { 0, 11, 12, 13, 14, 15, 2 } });
        Tensor mask = ids.ne(1).to(ScalarType.Int64);
        model.train();
        List<Tensor> Run(bool checkpointing)
        {
            model.GradientCheckpointing = checkpointing;
            using var random = new RandomSource(7);
            random.AttachTo(model);
            return Gradients(model, () => model.Logits(ids, mask).pow(2).sum());
        }
        var plain = Run(false);
        var checkpointed = Run(true);
        var otherMasks = Run(false);
        for (int i = 0; i < plain.Count; i++) AssertClose(plain[i], checkpointed[i], 1e-6, $"gradient {i}");
        RandomSource.DetachFrom(model);
        // A different stream gives different masks, so the equality above is not an accident of dropout being off.
        using var other = new RandomSource(8);
        other.AttachTo(model);
        var different = Gradients(model, () => model.Logits(ids, mask).pow(2).sum());
        Assert.IsTrue(plain.Zip(different).Any(p => (p.First - p.Second).abs().max().item<float>() > 1e-4));
        for (int i = 0; i < plain.Count; i++) AssertClose(plain[i], otherMasks[i], 0, $"same seed, same masks {i}");
    }
}
