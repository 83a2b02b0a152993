namespace Microsoft.ML.Bone.Persistence;

/// <summary>
/// How ML.NET finds the Bone transformers in a model zip. Every zip names <see cref="AssemblyName"/> as the loader
/// assembly of its Bone entries; <c>mlContext.Model.Load</c> registers that assembly in its context's component
/// catalog and finds there an <c>[assembly: LoadableClass]</c> attribute per transformer, pointing at the
/// transformer's static <c>Create(IHostEnvironment, ModelLoadContext)</c>. So a fresh <see cref="MLContext"/> loads
/// Bone models with no registration call. (The attribute type is internal to ML.NET, which is why it lives in a
/// small metadata-only assembly next to this one rather than here; the tests rebuild it and check it.)
/// </summary>
internal static class BoneLoaders
{
    /// <summary>Full name of the loader assembly recorded in every zip.</summary>
    public const string AssemblyName = "Microsoft.ML.Bone.Loaders, Version=1.0.0.0, Culture=neutral, PublicKeyToken=null";

    private static readonly AsyncLocal<string?> BaseModelOverride = new();

    /// <summary>The base-model directory given to <see cref="BoneCatalog.LoadModel(string, out DataViewSchema, string?)"/> for the load in progress, if any.</summary>
    public static string? BaseModelPath => BaseModelOverride.Value;

    /// <summary>Sets <see cref="BaseModelPath"/> until the returned scope is disposed.</summary>
    public static IDisposable OverrideBaseModel(string? path)
    {
        string? previous = BaseModelOverride.Value;
        BaseModelOverride.Value = path;
        return new Restore(() => BaseModelOverride.Value = previous);
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }
}
