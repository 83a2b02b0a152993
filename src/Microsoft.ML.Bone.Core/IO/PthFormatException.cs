namespace Microsoft.ML.Bone.IO;

/// <summary>
/// A problem with the contents of a PyTorch <c>.pth</c> checkpoint (its ZIP container, its pickle, or the tensors it
/// describes); the message starts with the file's path and then says what is wrong. It derives from
/// <see cref="IOException"/> like <see cref="SafetensorsFormatException"/>, because
/// <see cref="InvalidDataException"/> is sealed.
/// </summary>
public sealed class PthFormatException(string path, string problem) : IOException($"{path}: {problem}")
{
    /// <summary>The file at fault.</summary>
    public string FilePath { get; } = path;

    /// <summary>The problem, without the path.</summary>
    public string Problem { get; } = problem;
}
