using System.Diagnostics;

namespace Microsoft.ML.Bone.Tests.Packaging;

/// <summary>
/// The packages as a user gets them: packed from a copy of the sources into a local folder feed, referenced by a fresh
/// console project outside the repository by PackageReference alone, built (which must apply the Debian 12 fix to its
/// own output) and run on a tiny text-classification and causal-LM pipeline; the samples build from the same feed.
/// </summary>
[TestClass]
public sealed class PackageConsumerTests
{
    private static readonly string[] SourceEntries = ["src", "build", "Directory.Build.props", "Directory.Build.targets", "Directory.Packages.props", "global.json", "NuGet.config", "README.md"];

    [TestMethod]
    [Timeout(1_200_000)]
    public void APlainProjectReferencingThePackagesBuildsAndRunsBothPipelines()
    {
        string data = SharedData.Path();
        string root = RepositoryRoot();
        string work = Directory.CreateTempSubdirectory("bone-consumer-").FullName;
        string version = $"0.1.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";
        try
        {
            // Pack from a copy, so this test never rebuilds the outputs the other tests are using.
            string sources = Path.Combine(work, "sources"), feed = Path.Combine(work, "feed");
            foreach (string entry in SourceEntries) Copy(Path.Combine(root, entry), Path.Combine(sources, entry));
            foreach (string project in new[] { "src/Microsoft.ML.Bone.Core/Microsoft.ML.Bone.Core.csproj", "src/Microsoft.ML.Bone/Microsoft.ML.Bone.csproj" })
                Run(sources, "dotnet", "pack", project, "-c", "Release", "-o", feed, $"-p:Version={version}", "--nologo");
            Assert.IsTrue(File.Exists(Path.Combine(feed, $"Microsoft.ML.Bone.Core.{version}.snupkg")), "symbols package");

            string nugetConfig = $"""
                <?xml version="1.0" encoding="utf-8"?>
                <configuration>
                  <packageSources>
                    <clear />
                    <add key="local" value="{feed}" />
                    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
                  </packageSources>
                </configuration>
                """;

            // The samples are user projects too: they build from the same feed, unchanged but for the feed's location.
            string samples = Path.Combine(work, "samples");
            Copy(Path.Combine(root, "samples"), samples);
            File.WriteAllText(Path.Combine(samples, "NuGet.config"), nugetConfig);
            foreach (string sample in new[] { "TextClassification", "CausalLM" })
                Run(samples, "dotnet", "build", Path.Combine(sample, sample + ".csproj"), "-c", "Release", $"-p:BoneVersion={version}", "--nologo");

            string app = Path.Combine(work, "app");
            Directory.CreateDirectory(app);
            File.WriteAllText(Path.Combine(app, "NuGet.config"), nugetConfig);
            File.WriteAllText(Path.Combine(app, "App.csproj"), $"""
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <Nullable>enable</Nullable>
                    <ImplicitUsings>enable</ImplicitUsings>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="Microsoft.ML.Bone" Version="{version}" />
                  </ItemGroup>
                </Project>
                """);
            File.Copy(Path.Combine(AppContext.BaseDirectory, "Packaging", "ConsumerProgram.cs.txt"), Path.Combine(app, "Program.cs"));
            string output = Run(app, "dotnet", "run", "-c", "Release", "--", data);
            StringAssert.Contains(output, "text classification: accuracy");
            StringAssert.Contains(output, "reloaded with mlContext.Model.Load: same scores");
            StringAssert.Contains(output, "causal LM: 4 completions");
            StringAssert.Contains(output, "consumer OK");
        }
        finally
        {
            Directory.Delete(work, recursive: true);
            // The packed versions are unique to this run; leave nothing of them in the global package cache.
            string cache = Environment.GetEnvironmentVariable("NUGET_PACKAGES") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            foreach (string id in new[] { "microsoft.ml.bone", "microsoft.ml.bone.core" })
                if (Directory.Exists(Path.Combine(cache, id, version))) Directory.Delete(Path.Combine(cache, id, version), recursive: true);
        }
    }

    private static string Run(string directory, string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in args) start.ArgumentList.Add(a);
        // The consumer must not inherit this test run's MSBuild settings.
        foreach (string name in new[] { "MSBuildExtensionsPath", "MSBuildSDKsPath", "MSBUILD_EXE_PATH", "VSTEST_HOST_DEBUG" }) start.Environment.Remove(name);
        using var process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(), stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(10)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{file} {string.Join(' ', args)} did not finish in 10 minutes.");
        }
        Assert.AreEqual(0, process.ExitCode, $"{file} {string.Join(' ', args)} in {directory}:\n{stdout.Result}\n{stderr.Result}");
        return stdout.Result;
    }

    private static void Copy(string from, string to)
    {
        if (File.Exists(from))
        {
            Directory.CreateDirectory(Path.GetDirectoryName(to)!);
            File.Copy(from, to);
            return;
        }
        foreach (string file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(from, file);
            if (relative.Split(Path.DirectorySeparatorChar).Any(p => p is "bin" or "obj")) continue;
            Directory.CreateDirectory(Path.GetDirectoryName(Path.Combine(to, relative))!);
            File.Copy(file, Path.Combine(to, relative));
        }
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Microsoft.ML.Bone.sln"))) return dir.FullName;
        throw new InvalidOperationException("Microsoft.ML.Bone.sln not found above the test output.");
    }
}
