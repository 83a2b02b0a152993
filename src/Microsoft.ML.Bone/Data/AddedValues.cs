namespace Microsoft.ML.Bone.Data;

/// <summary>Hands stored scorer outputs to getters of the column's type.</summary>
internal static class AddedValues
{
    public static TValue Convert<TValue>(object value, DataViewSchema.Column column)
    {
        switch (value)
        {
            case TValue typed:
                return typed;
            case float[] vector when typeof(TValue) == typeof(VBuffer<float>):
                return (TValue)(object)new VBuffer<float>(vector.Length, (float[])vector.Clone());
            case string text when typeof(TValue) == typeof(ReadOnlyMemory<char>):
                return (TValue)(object)text.AsMemory();
            default:
                throw new InvalidOperationException($"Column '{column.Name}' holds {column.Type}; it cannot be read as {typeof(TValue).Name}.");
        }
    }
}
