using System.Reflection;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Bone.Persistence;

/// <summary>Registers the loaders of every Bone transformer in a component catalog.</summary>
internal static class BoneLoaders
{
    private static readonly AsyncLocal<string?> BaseModelOverride = new();

    /// <summary>The base-model directory given to <see cref="BoneCatalog.LoadModel"/> for the load in progress, if any.</summary>
    public static string? BaseModelPath => BaseModelOverride.Value;

    public static void Register(ComponentCatalog catalog)
    {
        Register<BoneTextClassificationTransformer>(catalog, BoneTextClassificationTransformer.LoaderSignature);
        Register<BoneCausalLMTransformer>(catalog, BoneCausalLMTransformer.LoaderSignature);
    }

    /// <summary>Sets <see cref="BaseModelPath"/> until the returned scope is disposed.</summary>
    public static IDisposable OverrideBaseModel(string? path)
    {
        string? previous = BaseModelOverride.Value;
        BaseModelOverride.Value = path;
        return new Restore(() => BaseModelOverride.Value = previous);
    }

    private static void Register<T>(ComponentCatalog catalog, string loaderSignature)
    {
        MethodInfo create = typeof(T).GetMethod("Create", BindingFlags.NonPublic | BindingFlags.Static, [typeof(IHostEnvironment), typeof(object)])
            ?? throw new InvalidOperationException($"{typeof(T).Name} has no Create(IHostEnvironment, object) loader.");
        MlNetInternals.RegisterLoader(catalog, typeof(T), create, loaderSignature);
    }

    private sealed class Restore(Action undo) : IDisposable
    {
        public void Dispose() => undo();
    }
}
