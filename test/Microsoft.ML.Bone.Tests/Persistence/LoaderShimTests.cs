using System.Reflection;
using Microsoft.ML.Bone.Data;

namespace Microsoft.ML.Bone.Tests.Persistence;

/// <summary>The committed loader assembly is exactly what <see cref="LoaderShimWriter"/> writes for the transformers there are.</summary>
[TestClass]
public sealed class LoaderShimTests
{
    [TestMethod]
    public void TheCommittedLoaderAssemblyNamesEveryTransformerAndNothingElse()
    {
        Assembly bone = typeof(BoneCatalog).Assembly;
        var entries = bone.GetTypes()
            .Where(t => !t.IsAbstract && typeof(ScoringTransformer).IsAssignableFrom(t))
            .OrderBy(t => t.FullName, StringComparer.Ordinal)
            .Select(t => new LoaderShimEntry(t.FullName!, bone.GetName().Name!, (string)t.GetField("LoaderSignature", BindingFlags.NonPublic | BindingFlags.Static)!.GetValue(null)!, UserName(t)))
            .ToList();
        Assert.HasCount(2, entries);
        var loader = new AssemblyName(Microsoft.ML.Bone.Persistence.BoneLoaders.AssemblyName);
        byte[] expected = LoaderShimWriter.Write(loader.Name!, loader.Version!,
            typeof(Microsoft.ML.Runtime.IHostEnvironment).Assembly.GetName(),
            new AssemblyName($"System.Runtime, Version={Environment.Version.Major}.0.0.0, Culture=neutral, PublicKeyToken=b03f5f7f11d50a3a"), entries);

        string committed = Path.Combine(RepositoryRoot(), "src", "Microsoft.ML.Bone", "Loaders", "Microsoft.ML.Bone.Loaders.dll");
        if (Environment.GetEnvironmentVariable("BONE_WRITE_LOADER_SHIM") == "1") File.WriteAllBytes(committed, expected);
        CollectionAssert.AreEqual(expected, File.ReadAllBytes(committed),
            $"{committed} is not what the writer makes for the transformers of {bone.GetName().Name}; run the tests with BONE_WRITE_LOADER_SHIM=1 to rewrite it.");

        // The runtime reads it: one LoadableClass attribute per transformer, instantiated despite being internal to ML.NET.
        Assembly shim = Assembly.Load(loader);
        Assert.HasCount(2, shim.GetCustomAttributes(false).Where(a => a.GetType().Name == "LoadableClassAttribute"));
    }

    private static string UserName(Type t) => t.Name switch
    {
        nameof(BoneTextClassificationTransformer) => "Bone text classification",
        nameof(BoneCausalLMTransformer) => "Bone causal language model",
        _ => t.Name,
    };

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Microsoft.ML.Bone.sln"))) return dir.FullName;
        throw new InvalidOperationException("Microsoft.ML.Bone.sln not found above the test output.");
    }
}
