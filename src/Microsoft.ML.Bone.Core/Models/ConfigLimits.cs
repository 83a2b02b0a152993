namespace Microsoft.ML.Bone.Models;

/// <summary>
/// Bounds that config.json sizes must respect before anything is allocated from them: generous for every released
/// checkpoint (LLaMA-3's 128,256-token vocabulary, 10M-token contexts, 16k-wide layers), far below what overflows.
/// </summary>
public static class ConfigLimits
{
    /// <summary>Largest vocabulary.</summary>
    public const int Vocabulary = 1 << 22;
    /// <summary>Largest hidden (and head) width.</summary>
    public const int Width = 1 << 16;
    /// <summary>Largest MLP width.</summary>
    public const int IntermediateWidth = 1 << 20;
    /// <summary>Most layers.</summary>
    public const int Layers = 1024;
    /// <summary>Most attention heads.</summary>
    public const int Heads = 1024;
    /// <summary>Longest context.</summary>
    public const int Positions = 1 << 24;
    /// <summary>Most classification labels.</summary>
    public const int Labels = 1 << 16;
}
