using System.Collections.Concurrent;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace Microsoft.ML.Bone.Tests.Docs;

/// <summary>
/// The XML documentation file the compiler writes beside an assembly (GenerateDocumentationFile), with a member's
/// comment rendered as one line of Markdown.
/// </summary>
internal sealed partial class XmlDocumentation
{
    private static readonly ConcurrentDictionary<Assembly, XmlDocumentation> Loaded = new();
    private readonly Dictionary<string, XElement> _members;

    private XmlDocumentation(string path) =>
        _members = XDocument.Load(path).Descendants("member").ToDictionary(m => (string)m.Attribute("name")!, StringComparer.Ordinal);

    public static XmlDocumentation Of(Assembly assembly) => Loaded.GetOrAdd(assembly, a =>
    {
        string path = Path.ChangeExtension(a.Location, ".xml");
        return File.Exists(path) ? new XmlDocumentation(path) : throw new FileNotFoundException($"No XML documentation beside {a.Location}; its project must set GenerateDocumentationFile.", path);
    });

    /// <summary>The documentation id the compiler gives <paramref name="member"/>: <c>T:Ns.Type</c>, <c>F:Ns.Type.Field</c>, <c>P:Ns.Type.Property</c>.</summary>
    public static string IdOf(MemberInfo member) => member switch
    {
        Type t => "T:" + t.FullName!.Replace('+', '.'),
        FieldInfo or PropertyInfo => $"{(member is FieldInfo ? 'F' : 'P')}:{member.DeclaringType!.FullName!.Replace('+', '.')}.{member.Name}",
        _ => throw new ArgumentException($"{member} is neither a type, a field nor a property.", nameof(member)),
    };

    /// <summary>Summary, then remarks and value if present, as one line; null when the member has no summary.</summary>
    public static string? Describe(MemberInfo member)
    {
        Assembly assembly = member is Type t ? t.Assembly : member.DeclaringType!.Assembly;
        if (!Of(assembly)._members.TryGetValue(IdOf(member), out XElement? doc) || doc.Element("summary") is not { } summary) return null;
        string text = string.Join(" ", new[] { summary, doc.Element("remarks"), doc.Element("value") }.OfType<XElement>().Select(Render));
        text = Whitespace().Replace(text, " ").Trim();
        return text.Length == 0 ? null : text;
    }

    private static string Render(XElement element)
    {
        var text = new StringBuilder();
        foreach (XNode node in element.Nodes())
        {
            text.Append(node switch
            {
                XText t => t.Value,
                XElement { Name.LocalName: "see" or "seealso" } e when e.Attribute("cref") is { } cref => ShortName(cref.Value),
                XElement { Name.LocalName: "see" } e when e.Attribute("langword") is { } word => $"`{word.Value}`",
                XElement { Name.LocalName: "see" } e when e.Attribute("href") is { } href => e.IsEmpty ? href.Value : $"[{Render(e)}]({href.Value})",
                XElement { Name.LocalName: "c" or "code" } e => $"`{e.Value.Trim()}`",
                XElement { Name.LocalName: "paramref" or "typeparamref" } e => (string?)e.Attribute("name") ?? "",
                XElement { Name.LocalName: "para" } e => $" {Render(e)} ",
                XElement e => Render(e),
                _ => "",
            });
        }
        return text.ToString();
    }

    /// <summary><c>T:Ns.AdapterKind</c> → AdapterKind; <c>F:Ns.FineTuningOptions.MiniR</c> → FineTuningOptions.MiniR.</summary>
    private static string ShortName(string cref)
    {
        bool member = cref.Length > 1 && cref[1] == ':' && cref[0] != 'T';
        string name = cref.Length > 1 && cref[1] == ':' ? cref[2..] : cref;
        if (name.IndexOf('(') is int parameters and >= 0) name = name[..parameters];
        string[] parts = GenericArity().Replace(name, "").Split('.');
        return string.Join('.', parts.TakeLast(member && parts.Length > 1 ? 2 : 1));
    }

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();

    [GeneratedRegex(@"`+\d+")]
    private static partial Regex GenericArity();
}
