using System.Globalization;

namespace Microsoft.ML.Bone.Data;

/// <summary>
/// The classes of a key-typed label: their count and the key values (<c>KeyValues</c> annotation) in their original
/// item type (text or a number type), kept as invariant strings so they can be saved and rebuilt.
/// </summary>
internal sealed record LabelValues(string[] Names, string ValueType)
{
    /// <summary>Whether <paramref name="valueType"/> is one of the item types labels are kept in.</summary>
    public static bool IsKnownValueType(string valueType) => Types.ContainsKey(valueType);

    private static readonly Dictionary<string, PrimitiveDataViewType> Types = new()
    {
        ["Text"] = TextDataViewType.Instance,
        ["Single"] = NumberDataViewType.Single,
        ["Double"] = NumberDataViewType.Double,
        ["Int32"] = NumberDataViewType.Int32,
        ["Int64"] = NumberDataViewType.Int64,
        ["UInt32"] = NumberDataViewType.UInt32,
        ["Boolean"] = BooleanDataViewType.Instance,
    };

    public int Count => Names.Length;

    /// <summary>Classes of <paramref name="label"/> (a key column); names "0", "1", … when it has no key values.</summary>
    public static LabelValues From(DataViewSchema.Column label, KeyDataViewType key)
    {
        int count = checked((int)key.Count);
        var keyValues = label.Annotations.Schema.GetColumnOrNull(AnnotationKinds.KeyValues);
        if (keyValues is { Type: VectorDataViewType { ItemType: PrimitiveDataViewType item } } && Types.FirstOrDefault(t => t.Value.Equals(item)).Key is { } typeName)
        {
            string[] names = typeName switch
            {
                "Text" => Read<ReadOnlyMemory<char>>(label, v => v.ToString()),
                "Single" => Read<float>(label, v => v.ToString("R", CultureInfo.InvariantCulture)),
                "Double" => Read<double>(label, v => v.ToString("R", CultureInfo.InvariantCulture)),
                "Int32" => Read<int>(label, v => v.ToString(CultureInfo.InvariantCulture)),
                "Int64" => Read<long>(label, v => v.ToString(CultureInfo.InvariantCulture)),
                "UInt32" => Read<uint>(label, v => v.ToString(CultureInfo.InvariantCulture)),
                _ => Read<bool>(label, v => v ? "True" : "False"),
            };
            if (names.Length == count) return new LabelValues(names, typeName);
        }
        return new LabelValues(Enumerable.Range(0, count).Select(i => i.ToString(CultureInfo.InvariantCulture)).ToArray(), "Text");
    }

    /// <summary>
    /// A reader of <paramref name="column"/> (a raw label of one of the supported types) as the invariant string these
    /// names use, or null for a missing value (NaN, empty text); null when the column's type is not supported.
    /// </summary>
    public static Func<string?>? ValueReader(DataViewRow row, DataViewSchema.Column column)
    {
        Func<string?> Read<T>(Func<T, string?> format)
        {
            var get = row.GetGetter<T>(column);
            T value = default!;
            return () => { get(ref value); return format(value); };
        }
        return column.Type switch
        {
            TextDataViewType => Read<ReadOnlyMemory<char>>(v => v.Length == 0 ? null : v.ToString()),
            var t when t == NumberDataViewType.Single => Read<float>(v => float.IsNaN(v) ? null : v.ToString("R", CultureInfo.InvariantCulture)),
            var t when t == NumberDataViewType.Double => Read<double>(v => double.IsNaN(v) ? null : v.ToString("R", CultureInfo.InvariantCulture)),
            var t when t == NumberDataViewType.Int32 => Read<int>(v => v.ToString(CultureInfo.InvariantCulture)),
            var t when t == NumberDataViewType.Int64 => Read<long>(v => v.ToString(CultureInfo.InvariantCulture)),
            var t when t == NumberDataViewType.UInt32 => Read<uint>(v => v.ToString(CultureInfo.InvariantCulture)),
            BooleanDataViewType => Read<bool>(v => v ? "True" : "False"),
            _ => null,
        };
    }

    /// <summary>Annotations of the score vector: slot names plus the kinds ML.NET evaluators look for.</summary>
    public DataViewSchema.Annotations ScoreAnnotations()
    {
        var builder = new DataViewSchema.Annotations.Builder();
        builder.Add(AnnotationKinds.SlotNames, new VectorDataViewType(TextDataViewType.Instance, Count), (ref VBuffer<ReadOnlyMemory<char>> v) => v = new VBuffer<ReadOnlyMemory<char>>(Count, Names.Select(n => n.AsMemory()).ToArray()));
        builder.Add(AnnotationKinds.ScoreColumnKind, TextDataViewType.Instance, (ref ReadOnlyMemory<char> v) => v = "MulticlassClassification".AsMemory());
        builder.Add(AnnotationKinds.ScoreValueKind, TextDataViewType.Instance, (ref ReadOnlyMemory<char> v) => v = "Score".AsMemory());
        return builder.ToAnnotations();
    }

    /// <summary>The <c>KeyValues</c> annotation for the predicted-label key column, in the label's original type.</summary>
    public DataViewSchema.Annotations KeyAnnotations()
    {
        var builder = new DataViewSchema.Annotations.Builder();
        var type = new VectorDataViewType(Types[ValueType], Count);
        switch (ValueType)
        {
            case "Text": Add(builder, type, n => n.AsMemory()); break;
            case "Single": Add(builder, type, n => float.Parse(n, CultureInfo.InvariantCulture)); break;
            case "Double": Add(builder, type, n => double.Parse(n, CultureInfo.InvariantCulture)); break;
            case "Int32": Add(builder, type, n => int.Parse(n, CultureInfo.InvariantCulture)); break;
            case "Int64": Add(builder, type, n => long.Parse(n, CultureInfo.InvariantCulture)); break;
            case "UInt32": Add(builder, type, n => uint.Parse(n, CultureInfo.InvariantCulture)); break;
            default: Add(builder, type, n => n == "True"); break;
        }
        return builder.ToAnnotations();
    }

    private void Add<T>(DataViewSchema.Annotations.Builder builder, VectorDataViewType type, Func<string, T> parse)
    {
        T[] values = Names.Select(parse).ToArray();
        builder.Add(AnnotationKinds.KeyValues, type, (ref VBuffer<T> v) => v = new VBuffer<T>(values.Length, (T[])values.Clone()));
    }

    private static string[] Read<T>(DataViewSchema.Column label, Func<T, string> format)
    {
        VBuffer<T> values = default;
        label.Annotations.GetValue(AnnotationKinds.KeyValues, ref values);
        return values.DenseValues().Select(format).ToArray();
    }
}

/// <summary>ML.NET's annotation kind names (its own constants are internal).</summary>
internal static class AnnotationKinds
{
    public const string SlotNames = "SlotNames";
    public const string KeyValues = "KeyValues";
    public const string ScoreColumnKind = "ScoreColumnKind";
    public const string ScoreValueKind = "ScoreValueKind";
}
