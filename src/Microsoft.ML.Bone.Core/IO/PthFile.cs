using static TorchSharp.torch;

namespace Microsoft.ML.Bone.IO;

// PLACEHOLDER until the restricted reader lands (replaced by the feature/pth-reader branch).
public sealed record PthEntry(string Name, ScalarType DType, long[] Shape);

public sealed class PthFile : IDisposable
{
    public static PthFile Open(string path) => throw new NotSupportedException(path);
    public string FilePath => "";
    public IReadOnlyList<PthEntry> Entries => [];
    public bool Contains(string name) => false;
    public PthEntry this[string name] => throw new KeyNotFoundException(name);
    public void ReadInto(string name, Tensor destination, WeightFingerprint? fingerprint = null) => throw new NotSupportedException();
    public void Dispose() { }
}
