using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.Build;

[TestClass]
public sealed class TorchSharpLoadTests
{
    [TestMethod]
    public void MatmulMatchesManagedProduct()
    {
        var a = new float[3, 4];
        var b = new float[4, 2];
        for (int i = 0; i < 3; i++) for (int k = 0; k < 4; k++) a[i, k] = 0.5f * i - 0.25f * k + 1;
        for (int k = 0; k < 4; k++) for (int j = 0; j < 2; j++) b[k, j] = MathF.Sin(k + 2 * j);

        using var scope = NewDisposeScope();
        float[] product = matmul(tensor(a), tensor(b)).data<float>().ToArray();

        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 2; j++)
            {
                double expected = 0;
                for (int k = 0; k < 4; k++) expected += a[i, k] * b[k, j];
                Assert.AreEqual(expected, product[i * 2 + j], 1e-5);
            }
    }
}
