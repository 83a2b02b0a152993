namespace Microsoft.ML.Bone.Tests.Docs;

/// <summary>How <see cref="MarkdownCSharpBlocks"/> finds the blocks of a page and wraps one into a source file.</summary>
[TestClass]
public sealed class MarkdownCSharpBlocksTests
{
    [TestMethod]
    public void UsingsStatementsAndTypesLandInTheirPlacesWithTheirMarkdownLines()
    {
        string markdown = """
            # Page

            ```csharp
            using System.Text;

            var b = new StringBuilder();
            Console.WriteLine(new Row().Name);

            [Serializable]
            public sealed class Row
            {
                public string Name = "";
            }
            ```

            ```bash
            ```csharp inside another kind of block is not C#
            ```
            """;
        CSharpBlock block = MarkdownCSharpBlocks.Extract("docs/guide.md", markdown).Single();
        Assert.AreEqual(4, block.FirstLine);
        Assert.AreEqual("DocSnippets.Docs_Guide_1", MarkdownCSharpBlocks.NamespaceOf(block));

        string expected = """
            #pragma warning disable CS1998
            #line 4 "guide.md"
            using System.Text;
            #line default
            namespace DocSnippets.Docs_Guide_1
            {
                public static class Snippet
                {
                    public static async System.Threading.Tasks.Task Run()
                    {
            #line 5 "guide.md"

            var b = new StringBuilder();
            Console.WriteLine(new Row().Name);

            #line default
                    }
                }
            #line 9 "guide.md"
            [Serializable]
            public sealed class Row
            {
                public string Name = "";
            }
            #line default
            }

            """;
        Assert.AreEqual(expected.ReplaceLineEndings("\n"), MarkdownCSharpBlocks.Wrap(block, "DocSnippets.Docs_Guide_1", "guide.md"));
    }

    [TestMethod]
    public void AStatementAfterTheTypesIsAnErrorNamingTheFileAndLine()
    {
        string markdown = """
            Intro.

            ```csharp
            using Microsoft.ML;

            class Row { public string Text = ""; }

            var ml = new MLContext();
            ```
            """;
        CSharpBlock block = MarkdownCSharpBlocks.Extract("README.md", markdown).Single();
        var error = Assert.ThrowsExactly<FormatException>(() => MarkdownCSharpBlocks.Wrap(block, "DocSnippets.Readme_1", "README.md"));
        StringAssert.StartsWith(error.Message, "README.md:8: ");
        StringAssert.Contains(error.Message, "line 6");
    }

    [TestMethod]
    public void IndentedBlocksAreUnindentedAndAnUnclosedBlockIsAnError()
    {
        CSharpBlock block = MarkdownCSharpBlocks.Extract("README.md", "- item\n\n  ```csharp\n  Console.WriteLine(1);\n  ```\n").Single();
        CollectionAssert.AreEqual(new[] { "Console.WriteLine(1);" }, block.Lines.ToArray());
        Assert.AreEqual("DocSnippets.Readme_1", MarkdownCSharpBlocks.NamespaceOf(block));

        var error = Assert.ThrowsExactly<FormatException>(() => MarkdownCSharpBlocks.Extract("docs/a.md", "text\n```csharp\nvar x = 1;\n"));
        StringAssert.StartsWith(error.Message, "docs/a.md:2: ");
    }
}
