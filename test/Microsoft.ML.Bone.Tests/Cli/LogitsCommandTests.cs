using Microsoft.ML.Bone.Adapters;
using Microsoft.ML.Bone.IO;
using Microsoft.ML.Bone.Models.Roberta;
using Microsoft.ML.Bone.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.Cli;

[TestClass]
public sealed class LogitsCommandTests
{
    private string _dir = "";

    [TestInitialize]
    public void Init() => _dir = Directory.CreateTempSubdirectory("bone-logits-").FullName;

    [TestCleanup]
    public void Cleanup() => Directory.Delete(_dir, recursive: true);

    private static float[] ReadLogits(string path)
    {
        using var file = SafetensorsFile.Open(path);
        Assert.AreEqual(SafetensorsDType.F32, file["logits"].DType);
        return file.Load("logits").data<float>().ToArray();
    }

    [TestMethod]
    public void WritesTheLogitsOfOneSequenceWithAndWithoutAnAdapter()
    {
        using var scope = NewDisposeScope();
        string model = Path.Combine(_dir, "model");
        var original = TinyRoberta.Create(model);
        long[] ids = [0, 7, 12, 33, 2];
        Tensor input = tensor(ids).unsqueeze(0);
        float[] expected;
        using (no_grad()) expected = original.call(input, ones_like(input))[0].data<float>().ToArray();

        var result = BoneCli.Run("logits", "--model", model, "--ids", "0,7,12,33,2", "--out", Path.Combine(_dir, "plain.safetensors"));
        Assert.AreEqual(0, result.ExitCode, result.StdErr);
        float[] plain = ReadLogits(Path.Combine(_dir, "plain.safetensors"));
        Assert.HasCount(3, plain);
        for (int i = 0; i < 3; i++) Assert.AreEqual(expected[i], plain[i], 1e-5);

        var adapted = AdapterModel.Inject(original, new BoneConfig { R = 4, Variant = BoneVariant.Bat, TargetModules = RobertaForSequenceClassification.AllProjections });
        using (no_grad()) foreach (var p in adapted.TrainableParameters()) p.add_(0.05 * (arange(p.numel(), dtype: ScalarType.Float32) * 0.3).sin().reshape(p.shape));
        PeftAdapterDirectory.Save(adapted, Path.Combine(_dir, "adapter"));
        float[] withAdapter;
        using (no_grad()) withAdapter = original.call(input, ones_like(input))[0].data<float>().ToArray();

        result = BoneCli.Run("logits", "--model", model, "--adapter", Path.Combine(_dir, "adapter"), "--ids", "0,7,12,33,2", "--out", Path.Combine(_dir, "adapted.safetensors"));
        Assert.AreEqual(0, result.ExitCode, result.StdErr);
        float[] actual = ReadLogits(Path.Combine(_dir, "adapted.safetensors"));
        for (int i = 0; i < 3; i++) Assert.AreEqual(withAdapter[i], actual[i], 1e-5);
        Assert.IsTrue(withAdapter.Zip(expected).Any(p => Math.Abs(p.First - p.Second) > 1e-3), "the adapter changes the logits");
    }

    [TestMethod]
    public void BadInputFailsWithOneLine()
    {
        using var scope = NewDisposeScope();
        string model = Path.Combine(_dir, "model");
        TinyRoberta.Create(model);
        BoneCli.AssertOneLineError(BoneCli.Run("logits", "--model", model, "--ids", "0,7,x"), "--ids", "'x'");
        BoneCli.AssertOneLineError(BoneCli.Run("logits", "--model", model, "--ids", "0,70000"), "70000", "vocabulary");
        BoneCli.AssertOneLineError(BoneCli.Run("logits", "--model", Path.Combine(_dir, "none"), "--ids", "0"), "config.json");
        BoneCli.AssertOneLineError(BoneCli.Run("logits", "--model", model, "--adapter", Path.Combine(_dir, "none"), "--ids", "0,2"), "adapter directory not found");
    }
}
