using Microsoft.ML.Bone.IO;

namespace Microsoft.ML.Bone.Adapters;

/// <summary>Maps adapter module paths to the base checkpoint's tensor names.</summary>
internal static class BaseTensorNames
{
    /// <summary>
    /// <paramref name="name"/> as the checkpoint spells it, or null. Hugging Face loads a bare base-model checkpoint
    /// (no <c>roberta.</c> / <c>model.</c> prefix) into a head model, so both spellings are accepted.
    /// </summary>
    public static string? Resolve(SafetensorsCheckpoint checkpoint, string name)
    {
        if (checkpoint.Contains(name)) return name;
        int dot = name.IndexOf('.');
        return dot > 0 && checkpoint.Contains(name[(dot + 1)..]) ? name[(dot + 1)..] : null;
    }

    /// <summary>The 2-D weight of <paramref name="module"/>; errors name <paramref name="source"/>.</summary>
    public static (string Name, long[] Shape) Weight(SafetensorsCheckpoint checkpoint, string module, string source)
    {
        string name = Resolve(checkpoint, module + ".weight")
            ?? throw new InvalidDataException($"{source}: the adapter targets '{module}.weight', which the base checkpoint ({checkpoint.Description}) does not have.");
        long[] shape = checkpoint.Entry(name).Shape;
        if (shape.Length != 2) throw new InvalidDataException($"{source}: the adapter targets '{name}', which has {shape.Length} dimensions instead of 2.");
        return (name, shape);
    }
}
