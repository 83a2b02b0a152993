using System.Reflection;

namespace Microsoft.ML.Bone.Data;

/// <summary>
/// Copies of one input column's values for the rows of a batch, taken while the input cursor is on each row and served
/// afterwards. Text and vectors are copied deeply (upstream cursors reuse their buffers from row to row).
/// </summary>
internal abstract class ColumnBuffer
{
    /// <summary>Stores the value of the row the input cursor is on.</summary>
    public abstract void Capture();

    /// <summary>Forgets the stored rows.</summary>
    public abstract void Clear();

    /// <summary>A getter of the stored value at the row <paramref name="index"/> returns.</summary>
    public abstract ValueGetter<TValue> Getter<TValue>(Func<int> index);

    public static ColumnBuffer Create(DataViewRow row, DataViewSchema.Column column) =>
        (ColumnBuffer)typeof(ColumnBuffer).GetMethod(nameof(CreateTyped), BindingFlags.NonPublic | BindingFlags.Static)!
            .MakeGenericMethod(column.Type.RawType).Invoke(null, [row, column])!;

    private static ColumnBuffer CreateTyped<T>(DataViewRow row, DataViewSchema.Column column) => new Typed<T>(row.GetGetter<T>(column), Copier<T>(), column);

    // How to keep a value past the row: text as its own string, vectors into fresh arrays, everything else as is.
    private static Func<T, T> Copier<T>()
    {
        if (typeof(T) == typeof(ReadOnlyMemory<char>)) return (Func<T, T>)(object)new Func<ReadOnlyMemory<char>, ReadOnlyMemory<char>>(v => v.ToString().AsMemory());
        if (typeof(T).IsGenericType && typeof(T).GetGenericTypeDefinition() == typeof(VBuffer<>))
            return (Func<T, T>)typeof(ColumnBuffer).GetMethod(nameof(VectorCopier), BindingFlags.NonPublic | BindingFlags.Static)!
                .MakeGenericMethod(typeof(T).GetGenericArguments()[0]).Invoke(null, null)!;
        return v => v;
    }

    private static Func<VBuffer<TItem>, VBuffer<TItem>> VectorCopier<TItem>()
    {
        bool text = typeof(TItem) == typeof(ReadOnlyMemory<char>);
        return v =>
        {
            VBuffer<TItem> copy = default;
            v.CopyTo(ref copy);
            if (text)
            {
                // The items themselves point into reused memory too.
                var editor = VBufferEditor.CreateFromBuffer(ref copy);
                for (int i = 0; i < editor.Values.Length; i++) editor.Values[i] = (TItem)(object)((ReadOnlyMemory<char>)(object)editor.Values[i]!).ToString().AsMemory();
                copy = editor.Commit();
            }
            return copy;
        };
    }

    private sealed class Typed<T>(ValueGetter<T> get, Func<T, T> copy, DataViewSchema.Column column) : ColumnBuffer
    {
        private readonly List<T> _values = [];

        public override void Capture()
        {
            T value = default!;
            get(ref value);
            _values.Add(copy(value));
        }

        public override void Clear() => _values.Clear();

        public override ValueGetter<TValue> Getter<TValue>(Func<int> index)
        {
            if (typeof(TValue) != typeof(T)) throw new InvalidOperationException($"Column '{column.Name}' holds {column.Type}; it cannot be read as {typeof(TValue).Name}.");
            // Hand out copies, so a consumer that writes into its buffers cannot change the stored rows.
            return (ref TValue value) => value = (TValue)(object)copy(_values[index()])!;
        }
    }
}
