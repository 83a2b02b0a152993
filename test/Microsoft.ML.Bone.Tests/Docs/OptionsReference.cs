using System.Globalization;
using System.Reflection;
using System.Text;

namespace Microsoft.ML.Bone.Tests.Docs;

/// <summary>
/// docs/options.md: one table per options class (option, type, default, description) and one per enum those options
/// use, from the XML documentation and from the values of a fresh instance, so the page cannot drift from the code.
/// </summary>
internal static class OptionsReference
{
    public static readonly Type[] LibraryOptions = [typeof(FineTuningOptions), typeof(BoneTextClassificationOptions), typeof(BoneCausalLMOptions)];

    /// <summary>The page for <paramref name="optionsTypes"/>; an undocumented type, option or enum value is an error naming every one.</summary>
    public static string Generate(IReadOnlyList<Type> optionsTypes)
    {
        var missing = new List<string>();
        string Doc(MemberInfo member)
        {
            string? text = XmlDocumentation.Describe(member);
            if (text is null) missing.Add(XmlDocumentation.IdOf(member)[2..]);
            return Cell(text ?? "");
        }

        var enums = new List<Type>();
        var page = new StringBuilder();
        page.Append("# Options reference\n\n");
        page.Append("Every option of the ML.NET trainers with its type, default and meaning. This page is generated from the XML\n");
        page.Append("documentation and the values of a fresh instance by `test/Microsoft.ML.Bone.Tests/Docs/OptionsReference.cs`; after\n");
        page.Append("changing an option, rerun the tests with `BONE_WRITE_DOCS=1` to rewrite it.\n");
        foreach (Type type in optionsTypes)
        {
            page.Append($"\n## {type.Name}\n\n{Doc(type)}\n");
            if (optionsTypes.Contains(type.BaseType)) page.Append($"\nAlso every option of [{type.BaseType!.Name}](#{Anchor(type.BaseType)}).\n");
            page.Append("\n| option | type | default | description |\n|---|---|---|---|\n");
            object[] instances = Instances(type);
            foreach (MemberInfo option in Options(type))
            {
                Type valueType = option is FieldInfo f ? f.FieldType : ((PropertyInfo)option).PropertyType;
                enums.AddRange(EnumsIn(valueType).Where(e => !enums.Contains(e)));
                page.Append($"| `{option.Name}` | {TypeName(option, valueType, optionsTypes.Concat(enums))} | {Default(option, instances)} | {Doc(option)} |\n");
            }
            var constants = type.GetFields(BindingFlags.Public | BindingFlags.Static | BindingFlags.DeclaredOnly).Where(c => c.IsLiteral).OrderBy(c => c.MetadataToken).ToList();
            if (constants.Count > 0) page.Append('\n');
            foreach (FieldInfo constant in constants) page.Append($"Constant `{type.Name}.{constant.Name}`: {Doc(constant)}\n");
        }

        foreach (Type e in enums)
        {
            page.Append($"\n## {e.Name}\n\n{Doc(e)}\n\n| value | description |\n|---|---|\n");
            foreach (FieldInfo value in e.GetFields(BindingFlags.Public | BindingFlags.Static).OrderBy(v => v.MetadataToken))
                page.Append($"| `{value.Name}` | {Doc(value)} |\n");
        }
        if (missing.Count > 0)
            throw new InvalidOperationException($"No XML <summary> for {string.Join(", ", missing)}; document it in the source so the options reference stays complete.");
        return page.ToString();
    }

    private static IEnumerable<MemberInfo> Options(Type type)
    {
        const BindingFlags declared = BindingFlags.Public | BindingFlags.Instance | BindingFlags.DeclaredOnly;
        IEnumerable<MemberInfo> fields = type.GetFields(declared).OrderBy(f => f.MetadataToken);
        return fields.Concat(type.GetProperties(declared).Where(p => p.GetMethod is { IsPublic: true } && p.GetIndexParameters().Length == 0).OrderBy(p => p.MetadataToken));
    }

    // An abstract class's defaults are what each concrete options class of its assembly starts with.
    private static object[] Instances(Type type)
    {
        IEnumerable<Type> concrete = type.IsAbstract
            ? type.Assembly.GetExportedTypes().Where(t => !t.IsAbstract && t.IsSubclassOf(type)).OrderBy(t => t.Name, StringComparer.Ordinal)
            : [type];
        return [.. concrete.Select(t => Activator.CreateInstance(t)!)];
    }

    private static string Default(MemberInfo option, object[] instances)
    {
        var values = instances.Select(i => (i.GetType(), Literal(option is FieldInfo f ? f.GetValue(i) : ((PropertyInfo)option).GetValue(i), i.GetType()))).ToList();
        if (values.Count == 0) throw new InvalidOperationException($"{option.DeclaringType!.Name} has no concrete options class to read the default of {option.Name} from.");
        return values.Select(v => v.Item2).Distinct().Count() == 1
            ? Cell($"`{values[0].Item2}`")
            : Cell(string.Join("; ", values.Select(v => $"`{v.Item2}` ({v.Item1.Name})")));
    }

    private static string Literal(object? value, Type options) => value switch
    {
        null => "null",
        string s when options.GetFields(BindingFlags.Public | BindingFlags.Static | BindingFlags.FlattenHierarchy).FirstOrDefault(c => c.IsLiteral && Equals(c.GetRawConstantValue(), s)) is { } constant
            => $"{constant.DeclaringType!.Name}.{constant.Name}",
        string s => "\"" + s.Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", "\\n").Replace("\t", "\\t") + "\"",
        bool b => b ? "true" : "false",
        Enum e => $"{e.GetType().Name}.{e}",
        IFormattable n when value.GetType().IsPrimitive => n.ToString(null, CultureInfo.InvariantCulture),
        Array a => "[" + string.Join(", ", a.Cast<object?>().Select(v => Literal(v, options))) + "]",
        _ when value.GetType().IsValueType && value.Equals(Activator.CreateInstance(value.GetType())) => "default",
        _ => throw new InvalidOperationException($"No literal for a default of type {value.GetType()}."),
    };

    private static string TypeName(MemberInfo option, Type type, IEnumerable<Type> linked)
    {
        NullabilityInfo nullability = option is FieldInfo f ? new NullabilityInfoContext().Create(f) : new NullabilityInfoContext().Create((PropertyInfo)option);
        Type core = Nullable.GetUnderlyingType(type) ?? type;
        string suffix = nullability.ReadState == NullabilityState.Nullable ? "?" : "";
        return linked.Contains(core) ? $"[{core.Name}](#{Anchor(core)}){suffix}" : Cell($"`{CSharpName(core, nullability)}{suffix}`");
    }

    private static string CSharpName(Type type, NullabilityInfo nullability)
    {
        if (type.IsArray) return CSharpName(type.GetElementType()!, nullability.ElementType!) + (nullability.ElementType!.ReadState == NullabilityState.Nullable ? "?" : "") + "[]";
        if (type.IsGenericType)
        {
            IEnumerable<string> arguments = type.GetGenericArguments().Zip(nullability.GenericTypeArguments, (a, n) => CSharpName(a, n) + (n.ReadState == NullabilityState.Nullable && !a.IsValueType ? "?" : ""));
            return $"{type.Name[..type.Name.IndexOf('`')]}<{string.Join(", ", arguments)}>";
        }
        return Type.GetTypeCode(type) switch
        {
            TypeCode.String => "string", TypeCode.Boolean => "bool", TypeCode.Int32 => "int", TypeCode.Int64 => "long",
            TypeCode.Single => "float", TypeCode.Double => "double", _ => type == typeof(object) ? "object" : type.Name,
        };
    }

    private static IEnumerable<Type> EnumsIn(Type type)
    {
        Type core = Nullable.GetUnderlyingType(type) ?? type;
        if (core.IsEnum) return [core];
        if (core.IsArray) return EnumsIn(core.GetElementType()!);
        return core.IsGenericType ? core.GetGenericArguments().SelectMany(EnumsIn) : [];
    }

    private static string Anchor(Type type) => type.Name.ToLowerInvariant();

    // A table cell is one line, and a pipe would end it.
    private static string Cell(string text) => text.Replace("|", "\\|");
}
