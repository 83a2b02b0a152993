namespace Microsoft.ML.Bone.Tests.Docs;

/// <summary>docs/options.md is what <see cref="OptionsReference"/> makes of the options as they are.</summary>
[TestClass]
public sealed class OptionsReferenceTests
{
    [TestMethod]
    public void TheCommittedOptionsReferenceIsWhatTheCodeAndItsXmlDocsGenerate()
    {
        string expected = OptionsReference.Generate(OptionsReference.LibraryOptions);
        string committed = Path.Combine(SharedData.RepositoryRoot, "docs", "options.md");
        if (Environment.GetEnvironmentVariable("BONE_WRITE_DOCS") == "1") File.WriteAllText(committed, expected);
        string actual = File.Exists(committed) ? File.ReadAllText(committed).ReplaceLineEndings("\n") : "";
        if (actual == expected) return;
        // The first differing line says what changed; the whole page twice would bury it.
        string[] want = expected.Split('\n'), have = actual.Split('\n');
        int line = Enumerable.Range(0, Math.Max(want.Length, have.Length)).First(i => i >= want.Length || i >= have.Length || want[i] != have[i]);
        Assert.Fail($"{committed} is not what the options and their XML docs generate; run the tests with BONE_WRITE_DOCS=1 to rewrite it.\n"
            + $"First difference, line {line + 1}:\n  generated: {(line < want.Length ? want[line] : "(end of page)")}\n  committed: {(line < have.Length ? have[line] : "(end of file)")}");
    }

    [TestMethod]
    public void TablesHoldTypeDefaultAndRenderedDocsAndTheBaseDefaultsComeFromEachDerivedClass()
    {
        string page = OptionsReference.Generate([typeof(SampleBase), typeof(SampleOptions)]);
        StringAssert.Contains(page, "| `Kind` | [SampleKind](#samplekind) | `SampleKind.Second` | Which kind; see SampleOptions.Names and `x`. Used as given. |");
        StringAssert.Contains(page, "| `Limit` | `int` | `3` (OtherOptions); `2` (SampleOptions) | The limit. |");
        StringAssert.Contains(page, "| `Names` | `string?[]?` | `[\"a\", null]` | Names \\| aliases. |");
        StringAssert.Contains(page, "Also every option of [SampleBase](#samplebase).");
        StringAssert.Contains(page, "| `First` | The first. |");
    }

    [TestMethod]
    public void AnOptionWithoutASummaryFailsNamingIt()
    {
        var error = Assert.ThrowsExactly<InvalidOperationException>(() => OptionsReference.Generate([typeof(UndocumentedOptions)]));
        StringAssert.Contains(error.Message, "Microsoft.ML.Bone.Tests.Docs.UndocumentedOptions.Threshold");
        Assert.DoesNotContain("Documented,", error.Message);
    }
}

/// <summary>Base of the sample options.</summary>
public abstract class SampleBase
{
    /// <summary>The limit.</summary>
    public int Limit = 2;
}

/// <summary>Sample options.</summary>
public sealed class SampleOptions : SampleBase
{
    /// <summary>Which kind; see <see cref="Names"/> and <c>x</c>.</summary>
    /// <remarks>Used
    /// as given.</remarks>
    public SampleKind Kind = SampleKind.Second;

    /// <summary>Names | aliases.</summary>
    public string?[]? Names = ["a", null];
}

/// <summary>Other sample options, with another limit.</summary>
public sealed class OtherOptions : SampleBase
{
    /// <summary>Sets a limit of its own.</summary>
    public OtherOptions() => Limit = 3;
}

/// <summary>Sample kinds.</summary>
public enum SampleKind
{
    /// <summary>The first.</summary>
    First,
    /// <summary>The second.</summary>
    Second,
}

/// <summary>Options with one undocumented field.</summary>
public sealed class UndocumentedOptions
{
    /// <summary>Documented.</summary>
    public int Documented;

    public double Threshold;
}
