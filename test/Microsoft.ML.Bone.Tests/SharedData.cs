namespace Microsoft.ML.Bone.Tests;

/// <summary>
/// The real test data in <c>../shared/data</c> beside the repository. Tests that need it are inconclusive (skipped)
/// with a message when it is absent, except under <c>CI=true</c>, where its absence fails them.
/// </summary>
internal static class SharedData
{
    private static readonly Lazy<string?> Root = new(FindRoot);

    /// <summary>Path to a file or folder under shared/data; skips or fails the test when it is not there.</summary>
    public static string Path(params string[] parts)
    {
        string? root = Root.Value;
        string path = root is null ? "" : System.IO.Path.Combine([root, .. parts]);
        if (root is not null && (File.Exists(path) || Directory.Exists(path))) return path;
        string message = $"Test data '{string.Join('/', parts)}' not found: expected ../shared/data next to the repository ({root ?? "repository root not found"}).";
        if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase)) Assert.Fail(message);
        Assert.Inconclusive(message);
        return path;
    }

    /// <summary>The repository checkout the tests were built from (the folder with Microsoft.ML.Bone.sln).</summary>
    public static string RepositoryRoot => Repository.Value ?? throw new InvalidOperationException($"No Microsoft.ML.Bone.sln above {AppContext.BaseDirectory}.");

    private static readonly Lazy<string?> Repository = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(System.IO.Path.Combine(dir.FullName, "Microsoft.ML.Bone.sln"))) return dir.FullName;
        return null;
    });

    private static string? FindRoot() =>
        Repository.Value is { } repository ? System.IO.Path.GetFullPath(System.IO.Path.Combine(repository, "..", "shared", "data")) : null;
}
