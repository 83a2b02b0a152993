using System.Diagnostics;
using System.Globalization;
using System.Reflection.Metadata;
using System.Reflection.PortableExecutable;
using System.Text.RegularExpressions;

namespace Microsoft.ML.Bone.Tests.Docs;

/// <summary>
/// Every <c>```csharp</c> block of README.md and docs/**/*.md is a program that compiles against the library as built:
/// all blocks go into one project outside the repository, built by <c>dotnet build</c>, whose errors name the Markdown
/// file and line.
/// </summary>
[TestClass]
public sealed partial class DocsCodeBlocksCompileTests
{
    [TestMethod]
    [Timeout(600_000)]
    public void EveryCSharpBlockOfTheReadmeAndTheDocsCompiles()
    {
        string root = SharedData.RepositoryRoot;
        var markdown = new List<string> { Path.Combine(root, "README.md") };
        if (Directory.Exists(Path.Combine(root, "docs")))
            markdown.AddRange(Directory.EnumerateFiles(Path.Combine(root, "docs"), "*.md", SearchOption.AllDirectories).Order(StringComparer.Ordinal));

        var blocks = markdown.SelectMany(f => MarkdownCSharpBlocks.Extract(Path.GetRelativePath(root, f).Replace('\\', '/'), File.ReadAllText(f))).ToList();
        Assert.IsTrue(blocks.Any(b => b.File == "README.md"), "README.md has no ```csharp block, so this test would check nothing.");

        string work = Directory.CreateTempSubdirectory("bone-docs-").FullName;
        try
        {
            var errors = new List<string>();
            foreach (CSharpBlock block in blocks)
            {
                try
                {
                    string ns = MarkdownCSharpBlocks.NamespaceOf(block);
                    File.WriteAllText(Path.Combine(work, ns + ".cs"), MarkdownCSharpBlocks.Wrap(block, ns, Path.Combine(root, block.File)));
                }
                catch (FormatException e) { errors.Add(e.Message); }
            }
            WriteProject(Path.Combine(work, "DocSnippets.csproj"));
            errors.AddRange(Build(work, root));
            if (errors.Count > 0)
                Assert.Fail($"{errors.Count} error(s) in the ```csharp blocks of {blocks.Select(b => b.File).Distinct().Count()} Markdown file(s) (each block is a top-level program: usings, statements, then types):\n{string.Join('\n', errors)}");
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    private static void WriteProject(string path)
    {
        // The library and what it exposes, exactly as these tests run them: the Microsoft.ML assemblies next to the
        // tests and every assembly of the same folder they reference, so no restore or package feed is involved.
        string references = string.Concat(CompileReferences().Select(r => $"\n    <Reference Include=\"{r}\" Private=\"false\" />"));
        File.WriteAllText(path, $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <TargetFramework>net{Environment.Version.Major}.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <GenerateDocumentationFile>false</GenerateDocumentationFile>
                <ProduceReferenceAssembly>false</ProduceReferenceAssembly>
              </PropertyGroup>
              <ItemGroup>{references}
              </ItemGroup>
            </Project>
            """);
    }

    private static List<string> CompileReferences()
    {
        string bin = AppContext.BaseDirectory;
        var pending = new Queue<string>(Directory.EnumerateFiles(bin, "Microsoft.ML*.dll").Where(f => Path.GetFileName(f) != "Microsoft.ML.Bone.Tests.dll"));
        var found = new SortedSet<string>(StringComparer.Ordinal);
        while (pending.TryDequeue(out string? file))
        {
            if (found.Contains(file)) continue;
            using var pe = new PEReader(File.OpenRead(file));
            if (!pe.HasMetadata) continue;
            found.Add(file);
            MetadataReader metadata = pe.GetMetadataReader();
            foreach (AssemblyReferenceHandle handle in metadata.AssemblyReferences)
            {
                string candidate = Path.Combine(bin, metadata.GetString(metadata.GetAssemblyReference(handle).Name) + ".dll");
                if (File.Exists(candidate)) pending.Enqueue(candidate);
            }
        }
        return [.. found];
    }

    /// <summary>Builds the project in <paramref name="work"/>; returns its compiler errors, paths relative to <paramref name="root"/>.</summary>
    private static List<string> Build(string work, string root)
    {
        var start = new ProcessStartInfo("dotnet") { WorkingDirectory = work, RedirectStandardOutput = true, RedirectStandardError = true };
        // Nothing above the temporary folder may shape the build, and it leaves no MSBuild node running.
        foreach (string a in new[] { "build", "-c", "Release", "--nologo", "-nodeReuse:false", "-clp:NoSummary", "-p:ImportDirectoryBuildProps=false", "-p:ImportDirectoryBuildTargets=false", "-p:ImportDirectoryPackagesProps=false" })
            start.ArgumentList.Add(a);
        // The child build must not inherit this test run's MSBuild settings.
        foreach (string name in new[] { "MSBuildExtensionsPath", "MSBuildSDKsPath", "MSBUILD_EXE_PATH", "VSTEST_HOST_DEBUG" }) start.Environment.Remove(name);
        using var process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync(), stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail("dotnet build of the documentation's code blocks did not finish in 5 minutes.");
        }
        if (process.ExitCode == 0) return [];
        string output = stdout.Result + stderr.Result;
        // "/repo/README.md(93,25): error CS0103: … [/tmp/…/DocSnippets.csproj]" → "README.md:93:25: error CS0103: …",
        // sorted by file and line, once each (MSBuild repeats errors in its summary).
        var errors = output.Split('\n').Select(l => CompilerMessage().Match(l.Trim())).Where(m => m.Success)
            .Select(m => (File: Path.GetRelativePath(root, m.Groups["file"].Value).Replace('\\', '/'), Line: int.Parse(m.Groups["line"].Value, CultureInfo.InvariantCulture), m.Groups["column"].Value, m.Groups["message"].Value))
            .Distinct()
            .OrderBy(e => e.File, StringComparer.Ordinal).ThenBy(e => e.Line)
            .Select(e => $"{e.File}:{e.Line}:{e.Item3}: error {e.Item4}")
            .ToList();
        return errors.Count > 0 ? errors : [$"dotnet build failed (exit code {process.ExitCode}):\n{output}"];
    }

    [GeneratedRegex(@"^(?<file>.+?)\((?<line>\d+),(?<column>\d+)\): error (?<message>.*?)( \[[^\]]*\])?$")]
    private static partial Regex CompilerMessage();
}
