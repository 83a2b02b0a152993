using System.Text;
using System.Text.RegularExpressions;

namespace Microsoft.ML.Bone.Tests.Docs;

/// <summary>One <c>```csharp</c> block of a Markdown file: its lines and the file line of the first of them.</summary>
internal sealed record CSharpBlock(string File, int FirstLine, int Ordinal, IReadOnlyList<string> Lines);

/// <summary>
/// Reads the <c>```csharp</c> blocks of Markdown files and turns each one — a top-level program: using directives,
/// statements, then type declarations — into a source file of its own namespace, so that every block of the docs
/// builds in one project, and <c>#line</c> directives make the compiler's errors name the Markdown file and line.
/// </summary>
internal static partial class MarkdownCSharpBlocks
{
    /// <summary>The name of the static class whose <c>Run()</c> holds a block's statements.</summary>
    public const string RunnerClass = "Snippet";

    public static List<CSharpBlock> Extract(string file, string markdown)
    {
        var blocks = new List<CSharpBlock>();
        string[] lines = markdown.ReplaceLineEndings("\n").Split('\n');
        for (int i = 0; i < lines.Length; i++)
        {
            Match open = Fence().Match(lines[i]);
            if (!open.Success) continue;
            int indent = open.Groups["indent"].Length;
            string fence = open.Groups["fence"].Value;
            bool csharp = open.Groups["info"].Value.Trim().Split(' ')[0] == "csharp";
            int opened = i;
            var code = new List<string>();
            // Any fence is skipped whole, so a ```csharp shown inside another block (a Markdown example) is not taken.
            for (i++; i < lines.Length && !Closes(lines[i], fence); i++) code.Add(Unindent(lines[i], indent));
            if (i == lines.Length) throw new FormatException($"{file}:{opened + 1}: the code block opened here is never closed.");
            if (csharp) blocks.Add(new CSharpBlock(file, opened + 2, blocks.Count + 1, code));
        }
        return blocks;
    }

    /// <summary>
    /// The block as a compilation unit: its using directives first, its statements inside
    /// <c>public static async Task Run()</c> of <see cref="RunnerClass"/>, its type declarations after that class, all in
    /// <paramref name="ns"/>. <paramref name="linePath"/> is the path the <c>#line</c> directives give the compiler.
    /// A statement after the type declarations (which a top-level program forbids) is a <see cref="FormatException"/>
    /// naming the file and line.
    /// </summary>
    public static string Wrap(CSharpBlock block, string ns, string linePath)
    {
        IReadOnlyList<string> lines = block.Lines;
        int usingsEnd = 0;
        for (int i = 0; i < lines.Count && (UsingDirective().IsMatch(lines[i]) || IsBlankOrComment(lines[i])); i++)
            if (UsingDirective().IsMatch(lines[i])) usingsEnd = i + 1;

        int typesStart = lines.Count;
        for (int i = usingsEnd; i < lines.Count; i++)
            if (TypeDeclaration().IsMatch(lines[i])) { typesStart = i; break; }
        // Attributes and doc comments right above the first type belong to it.
        while (typesStart < lines.Count && typesStart > usingsEnd && (lines[typesStart - 1].StartsWith('[') || lines[typesStart - 1].StartsWith("///", StringComparison.Ordinal))) typesStart--;
        for (int i = typesStart; i < lines.Count; i++)
            if (IsStatementAfterTypes(lines[i]))
                throw new FormatException($"{block.File}:{block.FirstLine + i}: a statement after the type declarations that start at line {block.FirstLine + typesStart}; a top-level program puts its types last.");

        var source = new StringBuilder();
        void Segment(int from, int to)
        {
            if (from == to) return;
            source.Append($"#line {block.FirstLine + from} \"{linePath}\"\n");
            for (int i = from; i < to; i++) source.Append(lines[i]).Append('\n');
            source.Append("#line default\n");
        }
        // A block need not await anything, and CS1998 would then be its only complaint.
        source.Append("#pragma warning disable CS1998\n");
        Segment(0, usingsEnd);
        source.Append($"namespace {ns}\n{{\n    public static class {RunnerClass}\n    {{\n        public static async System.Threading.Tasks.Task Run()\n        {{\n");
        Segment(usingsEnd, typesStart);
        source.Append("        }\n    }\n");
        Segment(typesStart, lines.Count);
        source.Append("}\n");
        return source.ToString();
    }

    /// <summary>A namespace unique to the block: <c>docs/getting-started.md</c>'s second block is <c>DocSnippets.Docs_GettingStarted_2</c>.</summary>
    public static string NamespaceOf(CSharpBlock block)
    {
        string path = block.File.EndsWith(".md", StringComparison.OrdinalIgnoreCase) ? block.File[..^3] : block.File;
        IEnumerable<string> parts = path.Split('/', '\\').Select(segment => string.Concat(NonIdentifier().Split(segment).Where(w => w.Length > 0).Select(Capitalized)));
        string name = string.Join('_', parts.Where(p => p.Length > 0));
        return $"DocSnippets.{(name.Length == 0 || char.IsDigit(name[0]) ? "_" : "")}{name}_{block.Ordinal}";
    }

    // README reads better as Readme in a namespace.
    private static string Capitalized(string word) =>
        char.ToUpperInvariant(word[0]) + (word.Any(char.IsLower) ? word[1..] : word[1..].ToLowerInvariant());

    private static bool IsBlankOrComment(string line) => line.Trim() is "" || line.TrimStart().StartsWith("//", StringComparison.Ordinal);

    // Members of types are indented; at column 0 after the first type only braces, attributes, comments, directives
    // and further type declarations may start.
    private static bool IsStatementAfterTypes(string line) =>
        line.Length > 0 && !char.IsWhiteSpace(line[0]) && !TypeDeclaration().IsMatch(line)
        && !(line[0] is '{' or '}' or '[' or '#') && !line.StartsWith("//", StringComparison.Ordinal) && !line.StartsWith("/*", StringComparison.Ordinal);

    private static bool Closes(string line, string fence)
    {
        string trimmed = line.Trim();
        return trimmed.Length >= fence.Length && trimmed.All(c => c == fence[0]);
    }

    private static string Unindent(string line, int indent)
    {
        int n = 0;
        while (n < indent && n < line.Length && line[n] == ' ') n++;
        return line[n..];
    }

    [GeneratedRegex(@"^(?<indent> *)(?<fence>`{3,}|~{3,})(?<info>.*)$")]
    private static partial Regex Fence();

    [GeneratedRegex(@"^\s*(global\s+)?using\s+(static\s+)?(\w+\s*=\s*)?[\w.]+(<[\w.,\s<>]*>)?\s*;\s*(//.*)?$")]
    private static partial Regex UsingDirective();

    [GeneratedRegex(@"^((public|internal|sealed|abstract|static|partial|file)\s+)*(class|record|struct|interface|enum)\b")]
    private static partial Regex TypeDeclaration();

    [GeneratedRegex(@"[^A-Za-z0-9]+")]
    private static partial Regex NonIdentifier();
}
