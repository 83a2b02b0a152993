using System.Buffers.Binary;
using System.Text;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.IO;

/// <summary>
/// A pickle interpreter for the <c>data.pkl</c> of a <c>torch.save</c> checkpoint that holds a state dict, and nothing
/// else. Python's unpickler can call any importable function, so a checkpoint is code; this one cannot: it knows a
/// fixed list of opcodes (those <c>torch.save</c> emits for dicts of tensors, protocols 2 to 5) and a fixed list of
/// globals, and only builds values (dicts, tuples, lists, strings, numbers, storage references and tensor
/// descriptions). Everything else is refused, naming the opcode or the global, before it has any effect.
/// </summary>
/// <remarks>
/// Allowed globals: <c>collections.OrderedDict</c> (called with no arguments, and given its attribute dict, e.g. a
/// state dict's <c>_metadata</c>, by BUILD, which is kept nowhere); <c>torch._utils._rebuild_tensor_v2</c>;
/// <c>torch._utils._rebuild_parameter</c>, which only wraps a tensor as an <c>nn.Parameter</c> and so reads as that
/// tensor; and the typed storages <c>torch.{Double,Float,Half,BFloat16,Long,Int,Short,Char,Byte,Bool}Storage</c>,
/// which only name an element type inside a persistent id. <c>_rebuild_parameter_with_state</c> is refused because
/// it sets arbitrary attributes; <c>_rebuild_tensor_v3</c>, quantized, sparse and other tensor kinds are refused
/// because plain state dicts do not use them.
/// Memory use is bounded by the pickle's length: every value pushed costs at least one opcode byte, strings are
/// checked against the bytes that remain before they are allocated, and nothing is evaluated recursively.
/// </remarks>
internal static class PthPickle
{
    /// <summary>A Python tuple.</summary>
    internal sealed class PickleTuple(object?[] items)
    {
        public object?[] Items { get; } = items;
    }

    /// <summary>A Python dict or OrderedDict, keeping insertion order as Python does (a repeated key keeps its first place).</summary>
    internal sealed class PickleDict(bool ordered)
    {
        private readonly Dictionary<object, int> _index = [];
        private readonly List<KeyValuePair<object, object?>> _items = [];

        public bool Ordered { get; } = ordered;

        public IReadOnlyList<KeyValuePair<object, object?>> Items => _items;

        public void Set(object key, object? value)
        {
            if (_index.TryGetValue(key, out int at)) _items[at] = new(key, value);
            else
            {
                _index[key] = _items.Count;
                _items.Add(new(key, value));
            }
        }
    }

    /// <summary>A reference to a global the allow-list accepts.</summary>
    internal sealed record PickleGlobal(string Module, string Name, GlobalKind Kind, ScalarType StorageType)
    {
        public override string ToString() => $"{Module}.{Name}";
    }

    internal enum GlobalKind { OrderedDict, RebuildTensorV2, RebuildParameter, Storage }

    /// <summary>A storage named by a persistent id: the checkpoint member <c>data/{Key}</c> holding <c>Numel</c> elements of <c>DType</c>.</summary>
    internal sealed record StorageRef(string Key, ScalarType DType, long Numel, string Location);

    /// <summary>A tensor as <c>_rebuild_tensor_v2</c> describes it; the values are checked later, by name.</summary>
    internal sealed record TensorRef(StorageRef Storage, long Offset, long[] Size, long[] Stride);

    private sealed class Mark
    {
        public static readonly Mark Instance = new();
    }

    private static readonly Dictionary<(string, string), (GlobalKind Kind, ScalarType Type)> AllowedGlobals = new()
    {
        [("collections", "OrderedDict")] = (GlobalKind.OrderedDict, default),
        [("torch._utils", "_rebuild_tensor_v2")] = (GlobalKind.RebuildTensorV2, default),
        [("torch._utils", "_rebuild_parameter")] = (GlobalKind.RebuildParameter, default),
        [("torch", "DoubleStorage")] = (GlobalKind.Storage, ScalarType.Float64),
        [("torch", "FloatStorage")] = (GlobalKind.Storage, ScalarType.Float32),
        [("torch", "HalfStorage")] = (GlobalKind.Storage, ScalarType.Float16),
        [("torch", "BFloat16Storage")] = (GlobalKind.Storage, ScalarType.BFloat16),
        [("torch", "LongStorage")] = (GlobalKind.Storage, ScalarType.Int64),
        [("torch", "IntStorage")] = (GlobalKind.Storage, ScalarType.Int32),
        [("torch", "ShortStorage")] = (GlobalKind.Storage, ScalarType.Int16),
        [("torch", "CharStorage")] = (GlobalKind.Storage, ScalarType.Int8),
        [("torch", "ByteStorage")] = (GlobalKind.Storage, ScalarType.Byte),
        [("torch", "BoolStorage")] = (GlobalKind.Storage, ScalarType.Bool),
    };

    // Every pickle opcode by name, so a refusal says which one it met.
    private static readonly Dictionary<byte, string> OpcodeNames = new()
    {
        [(byte)'('] = "MARK", [(byte)'.'] = "STOP", [(byte)'0'] = "POP", [(byte)'1'] = "POP_MARK", [(byte)'2'] = "DUP",
        [(byte)'F'] = "FLOAT", [(byte)'I'] = "INT", [(byte)'J'] = "BININT", [(byte)'K'] = "BININT1", [(byte)'L'] = "LONG",
        [(byte)'M'] = "BININT2", [(byte)'N'] = "NONE", [(byte)'P'] = "PERSID", [(byte)'Q'] = "BINPERSID", [(byte)'R'] = "REDUCE",
        [(byte)'S'] = "STRING", [(byte)'T'] = "BINSTRING", [(byte)'U'] = "SHORT_BINSTRING", [(byte)'V'] = "UNICODE",
        [(byte)'X'] = "BINUNICODE", [(byte)'a'] = "APPEND", [(byte)'b'] = "BUILD", [(byte)'c'] = "GLOBAL", [(byte)'d'] = "DICT",
        [(byte)'}'] = "EMPTY_DICT", [(byte)'e'] = "APPENDS", [(byte)'g'] = "GET", [(byte)'h'] = "BINGET", [(byte)'i'] = "INST",
        [(byte)'j'] = "LONG_BINGET", [(byte)'l'] = "LIST", [(byte)']'] = "EMPTY_LIST", [(byte)'o'] = "OBJ", [(byte)'p'] = "PUT",
        [(byte)'q'] = "BINPUT", [(byte)'r'] = "LONG_BINPUT", [(byte)'s'] = "SETITEM", [(byte)'t'] = "TUPLE", [(byte)')'] = "EMPTY_TUPLE",
        [(byte)'u'] = "SETITEMS", [(byte)'G'] = "BINFLOAT", [0x80] = "PROTO", [0x81] = "NEWOBJ", [0x82] = "EXT1", [0x83] = "EXT2",
        [0x84] = "EXT4", [0x85] = "TUPLE1", [0x86] = "TUPLE2", [0x87] = "TUPLE3", [0x88] = "NEWTRUE", [0x89] = "NEWFALSE",
        [0x8a] = "LONG1", [0x8b] = "LONG4", [(byte)'B'] = "BINBYTES", [(byte)'C'] = "SHORT_BINBYTES", [0x8c] = "SHORT_BINUNICODE",
        [0x8d] = "BINUNICODE8", [0x8e] = "BINBYTES8", [0x8f] = "EMPTY_SET", [0x90] = "ADDITEMS", [0x91] = "FROZENSET",
        [0x92] = "NEWOBJ_EX", [0x93] = "STACK_GLOBAL", [0x94] = "MEMOIZE", [0x95] = "FRAME", [0x96] = "BYTEARRAY8",
        [0x97] = "NEXT_BUFFER", [0x98] = "READONLY_BUFFER",
    };

    private static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    /// <summary>
    /// Runs the pickle in <paramref name="data"/> and returns the value it builds. Problems raise
    /// <see cref="PthFormatException"/> naming <paramref name="path"/>, <paramref name="member"/> and the byte offset.
    /// </summary>
    public static object? Run(ReadOnlySpan<byte> data, string path, string member)
    {
        var stack = new List<object?>();
        var marks = new List<int>();
        var memo = new Dictionary<long, object?>();
        var storages = new Dictionary<string, StorageRef>(StringComparer.Ordinal);
        int pos = 0;
        int opStart = 0;

        PthFormatException Error(string problem) => new(path, $"{member} byte {opStart}: {problem}");

        ReadOnlySpan<byte> Take(ReadOnlySpan<byte> d, ref int p, long count, string what)
        {
            if (count < 0 || count > d.Length - p) throw Error($"{what} of {count} bytes runs past the end of the pickle ({d.Length - p} bytes remain)");
            ReadOnlySpan<byte> s = d.Slice(p, (int)count);
            p += (int)count;
            return s;
        }

        object? Pop()
        {
            int floor = marks.Count > 0 ? marks[^1] : 0;
            if (stack.Count <= floor) throw Error("the stack is empty");
            object? v = stack[^1];
            stack.RemoveAt(stack.Count - 1);
            return v;
        }

        object? Top()
        {
            int floor = marks.Count > 0 ? marks[^1] : 0;
            if (stack.Count <= floor) throw Error("the stack is empty");
            return stack[^1];
        }

        object?[] PopToMark()
        {
            if (marks.Count == 0) throw Error("no MARK to pop to");
            int start = marks[^1];
            marks.RemoveAt(marks.Count - 1);
            object?[] items = stack.GetRange(start, stack.Count - start).ToArray();
            stack.RemoveRange(start, stack.Count - start);
            return items;
        }

        string Text(ReadOnlySpan<byte> bytes)
        {
            try { return StrictUtf8.GetString(bytes); }
            catch (DecoderFallbackException) { throw Error("a string is not valid UTF-8"); }
        }

        string Line(ReadOnlySpan<byte> d, ref int p)
        {
            int length = d[p..].IndexOf((byte)'\n');
            if (length < 0) throw Error("GLOBAL has no end of line before the end of the pickle");
            string s = Text(d.Slice(p, length));
            p += length + 1;
            return s;
        }

        PickleGlobal Global(string module, string name)
        {
            if (!AllowedGlobals.TryGetValue((module, name), out var allowed))
                throw Error($"global '{Clip(module)}.{Clip(name)}' is not allowed (a state dict of plain tensors needs only OrderedDict, torch._utils._rebuild_tensor_v2 and torch.*Storage); the checkpoint may run code when loaded with torch.load");
            return new PickleGlobal(module, name, allowed.Kind, allowed.Type);
        }

        void Memo(long index)
        {
            if (index < 0) throw Error($"memo index {index} is negative");
            memo[index] = Top();
        }

        object? Get(long index) =>
            memo.TryGetValue(index, out object? v) ? v : throw Error($"memo index {index} was never stored");

        while (true)
        {
            opStart = pos;
            if (pos >= data.Length) throw Error("the pickle ends without a STOP opcode (it is truncated)");
            byte op = data[pos++];
            switch (op)
            {
                case 0x80: // PROTO
                {
                    int version = Take(data, ref pos, 1, "PROTO")[0];
                    if (version < 2 || version > 5) throw Error($"pickle protocol {version} is not read (torch.save writes 2; 3 to 5 are accepted)");
                    break;
                }
                case 0x95: // FRAME: only a read-ahead hint; the length must still lie inside the data.
                {
                    ulong length = BinaryPrimitives.ReadUInt64LittleEndian(Take(data, ref pos, 8, "FRAME"));
                    if (length > (ulong)(data.Length - pos)) throw Error($"FRAME of {length} bytes runs past the end of the pickle");
                    break;
                }
                case (byte)'.': // STOP
                {
                    if (marks.Count != 0) throw Error("STOP with a MARK still open");
                    if (stack.Count != 1) throw Error($"STOP with {stack.Count} values on the stack instead of one");
                    if (pos != data.Length) throw Error($"{data.Length - pos} bytes follow the STOP opcode");
                    return stack[0];
                }
                case (byte)'(': // MARK
                    marks.Add(stack.Count);
                    break;
                case (byte)'}': // EMPTY_DICT
                    stack.Add(new PickleDict(ordered: false));
                    break;
                case (byte)']': // EMPTY_LIST
                    stack.Add(new List<object?>());
                    break;
                case (byte)')': // EMPTY_TUPLE
                    stack.Add(new PickleTuple([]));
                    break;
                case (byte)'N': // NONE
                    stack.Add(null);
                    break;
                case 0x88: // NEWTRUE
                    stack.Add(true);
                    break;
                case 0x89: // NEWFALSE
                    stack.Add(false);
                    break;
                case (byte)'J': // BININT
                    stack.Add((long)BinaryPrimitives.ReadInt32LittleEndian(Take(data, ref pos, 4, "BININT")));
                    break;
                case (byte)'K': // BININT1
                    stack.Add((long)Take(data, ref pos, 1, "BININT1")[0]);
                    break;
                case (byte)'M': // BININT2
                    stack.Add((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(data, ref pos, 2, "BININT2")));
                    break;
                case 0x8a: // LONG1: little-endian two's complement of n bytes.
                {
                    int n = Take(data, ref pos, 1, "LONG1")[0];
                    ReadOnlySpan<byte> bytes = Take(data, ref pos, n, "LONG1");
                    if (n > 8) throw Error($"an integer of {n} bytes is too large");
                    long value = 0;
                    for (int i = n - 1; i >= 0; i--) value = (value << 8) | bytes[i];
                    if (n is > 0 and < 8 && (bytes[n - 1] & 0x80) != 0) value -= 1L << (8 * n);
                    stack.Add(value);
                    break;
                }
                case (byte)'G': // BINFLOAT (big-endian)
                    stack.Add(BinaryPrimitives.ReadDoubleBigEndian(Take(data, ref pos, 8, "BINFLOAT")));
                    break;
                case (byte)'X': // BINUNICODE
                {
                    uint length = BinaryPrimitives.ReadUInt32LittleEndian(Take(data, ref pos, 4, "BINUNICODE"));
                    stack.Add(Text(Take(data, ref pos, length, "a string")));
                    break;
                }
                case 0x8c: // SHORT_BINUNICODE
                {
                    int length = Take(data, ref pos, 1, "SHORT_BINUNICODE")[0];
                    stack.Add(Text(Take(data, ref pos, length, "a string")));
                    break;
                }
                case (byte)'q': // BINPUT
                    Memo(Take(data, ref pos, 1, "BINPUT")[0]);
                    break;
                case (byte)'r': // LONG_BINPUT
                    Memo(BinaryPrimitives.ReadUInt32LittleEndian(Take(data, ref pos, 4, "LONG_BINPUT")));
                    break;
                case 0x94: // MEMOIZE
                    Memo(memo.Count);
                    break;
                case (byte)'h': // BINGET
                    stack.Add(Get(Take(data, ref pos, 1, "BINGET")[0]));
                    break;
                case (byte)'j': // LONG_BINGET
                    stack.Add(Get(BinaryPrimitives.ReadUInt32LittleEndian(Take(data, ref pos, 4, "LONG_BINGET"))));
                    break;
                case (byte)'t': // TUPLE
                    stack.Add(new PickleTuple(PopToMark()));
                    break;
                case 0x85: // TUPLE1
                    stack.Add(new PickleTuple([Pop()]));
                    break;
                case 0x86: // TUPLE2
                {
                    object? b = Pop(), a = Pop();
                    stack.Add(new PickleTuple([a, b]));
                    break;
                }
                case 0x87: // TUPLE3
                {
                    object? c = Pop(), b = Pop(), a = Pop();
                    stack.Add(new PickleTuple([a, b, c]));
                    break;
                }
                case (byte)'a': // APPEND
                {
                    object? item = Pop();
                    if (Top() is not List<object?> list) throw Error($"APPEND to {Describe(Top())}, not a list");
                    list.Add(item);
                    break;
                }
                case (byte)'e': // APPENDS
                {
                    object?[] items = PopToMark();
                    if (Top() is not List<object?> list) throw Error($"APPENDS to {Describe(Top())}, not a list");
                    list.AddRange(items);
                    break;
                }
                case (byte)'s': // SETITEM
                {
                    object? value = Pop(), key = Pop();
                    if (Top() is not PickleDict dict) throw Error($"SETITEM on {Describe(Top())}, not a dict");
                    dict.Set(Key(key, Error), value);
                    break;
                }
                case (byte)'u': // SETITEMS
                {
                    object?[] items = PopToMark();
                    if (items.Length % 2 != 0) throw Error($"SETITEMS with an odd number ({items.Length}) of keys and values");
                    if (Top() is not PickleDict dict) throw Error($"SETITEMS on {Describe(Top())}, not a dict");
                    for (int i = 0; i < items.Length; i += 2) dict.Set(Key(items[i], Error), items[i + 1]);
                    break;
                }
                case (byte)'c': // GLOBAL: "module\nname\n"
                {
                    string module = Line(data, ref pos);
                    string name = Line(data, ref pos);
                    stack.Add(Global(module, name));
                    break;
                }
                case 0x93: // STACK_GLOBAL
                {
                    object? name = Pop(), module = Pop();
                    if (module is not string m || name is not string n) throw Error("STACK_GLOBAL needs two strings");
                    stack.Add(Global(m, n));
                    break;
                }
                case (byte)'Q': // BINPERSID
                    stack.Add(Persistent(Pop(), storages, Error));
                    break;
                case (byte)'R': // REDUCE
                {
                    object? args = Pop(), callable = Pop();
                    stack.Add(Reduce(callable, args, Error));
                    break;
                }
                case (byte)'b': // BUILD: only an OrderedDict's attribute dict (a state dict's _metadata), which is dropped.
                {
                    object? state = Pop();
                    if (Top() is not PickleDict { Ordered: true }) throw Error($"BUILD on {Describe(Top())}; only an OrderedDict may be given attributes");
                    if (state is not (null or PickleDict)) throw Error($"BUILD with {Describe(state)} as an OrderedDict's attributes, not a dict");
                    break;
                }
                default:
                    throw Error(OpcodeNames.TryGetValue(op, out string? opName)
                        ? $"opcode {opName} (0x{op:x2}) is not allowed in a state dict"
                        : $"byte 0x{op:x2} is not a pickle opcode");
            }
        }
    }

    private static object Key(object? key, Func<string, PthFormatException> error) =>
        key is string or long ? key : throw error($"a dict key is {Describe(key)}; only strings and integers are accepted");

    // The persistent id torch.save writes for a storage: ('storage', storage type, key, location, numel).
    private static StorageRef Persistent(object? pid, Dictionary<string, StorageRef> storages, Func<string, PthFormatException> error)
    {
        if (pid is not PickleTuple { Items: [string kind, var type, var key, var location, var numel] })
            throw error($"a persistent id is {Describe(pid)}, not ('storage', type, key, location, numel)");
        if (kind != "storage") throw error($"persistent id of kind '{Clip(kind)}', not 'storage'");
        if (type is not PickleGlobal { Kind: GlobalKind.Storage } storageType) throw error($"persistent id names {Describe(type)} as its storage type");
        if (key is not string k || k.Length == 0) throw error($"persistent id has {Describe(key)} as its storage key");
        if (k.Length > 256) throw error($"persistent id has a storage key of {k.Length} characters (torch.save numbers its storages)");
        if (location is not string l) throw error($"persistent id for storage '{k}' has {Describe(location)} as its location");
        if (numel is not long n || n < 0) throw error($"persistent id for storage '{k}' has {Describe(numel)} as its element count");
        var storage = new StorageRef(k, storageType.StorageType, n, l);
        if (storages.TryGetValue(k, out StorageRef? seen))
        {
            if (seen.DType != storage.DType || seen.Numel != storage.Numel)
                throw error($"storage '{k}' is declared as {seen.Numel} × {seen.DType} and again as {n} × {storage.DType}");
            return seen;
        }
        storages[k] = storage;
        return storage;
    }

    private static object Reduce(object? callable, object? args, Func<string, PthFormatException> error)
    {
        if (callable is not PickleGlobal g) throw error($"REDUCE calls {Describe(callable)}, not an allowed global");
        if (args is not PickleTuple { Items: var a }) throw error($"REDUCE passes {Describe(args)} to {g} instead of a tuple");
        switch (g.Kind)
        {
            case GlobalKind.OrderedDict:
                if (a.Length != 0) throw error($"{g} is called with {a.Length} arguments; only an empty OrderedDict() is built");
                return new PickleDict(ordered: true);
            case GlobalKind.RebuildTensorV2:
            {
                // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
                if (a.Length is not (6 or 7)) throw error($"{g} is called with {a.Length} arguments instead of 6 or 7");
                if (a[0] is not StorageRef storage) throw error($"{g} is given {Describe(a[0])} as its storage");
                if (a[1] is not long offset) throw error($"{g} is given {Describe(a[1])} as its storage offset");
                long[] size = Integers(a[2], "size", g, error), stride = Integers(a[3], "stride", g, error);
                if (a[4] is not bool) throw error($"{g} is given {Describe(a[4])} as requires_grad");
                if (a[5] is not PickleDict { Items.Count: 0 }) throw error($"{g} is given {Describe(a[5])} as backward hooks; only an empty dict is accepted");
                if (a.Length == 7 && a[6] is not (null or PickleDict { Items.Count: 0 }))
                    throw error($"{g} is given tensor metadata ({Describe(a[6])}); only plain tensors are read");
                return new TensorRef(storage, offset, size, stride);
            }
            case GlobalKind.RebuildParameter:
                // (data, requires_grad, backward_hooks): an nn.Parameter around a tensor reads as that tensor.
                if (a.Length != 3) throw error($"{g} is called with {a.Length} arguments instead of 3");
                if (a[0] is not TensorRef tensor) throw error($"{g} is given {Describe(a[0])} instead of a tensor");
                if (a[1] is not bool) throw error($"{g} is given {Describe(a[1])} as requires_grad");
                if (a[2] is not PickleDict { Items.Count: 0 }) throw error($"{g} is given {Describe(a[2])} as backward hooks; only an empty dict is accepted");
                return tensor;
            default:
                throw error($"{g} cannot be called; it only names a storage type");
        }
    }

    private static long[] Integers(object? value, string what, PickleGlobal g, Func<string, PthFormatException> error)
    {
        if (value is not PickleTuple t) throw error($"{g} is given {Describe(value)} as its {what}, not a tuple");
        var result = new long[t.Items.Length];
        for (int i = 0; i < result.Length; i++)
            result[i] = t.Items[i] is long v ? v : throw error($"{g} is given {Describe(t.Items[i])} in its {what}, not an integer");
        return result;
    }

    // Names from the file go into messages; a hostile one could be megabytes long.
    private static string Clip(string s) => s.Length <= 200 ? s : $"{s[..200]}…";

    /// <summary>A short description of a pickle value for messages; never recursive.</summary>
    public static string Describe(object? value) => value switch
    {
        null => "None",
        bool b => b ? "True" : "False",
        long l => $"the integer {l}",
        double d => $"the float {d}",
        string s => s.Length <= 60 ? $"the string '{s}'" : $"a string of {s.Length} characters",
        PickleTuple t => $"a tuple of {t.Items.Length}",
        List<object?> l => $"a list of {l.Count}",
        PickleDict { Ordered: true } d => $"an OrderedDict of {d.Items.Count}",
        PickleDict d => $"a dict of {d.Items.Count}",
        PickleGlobal g => $"the global {g}",
        StorageRef s => $"storage '{s.Key}'",
        TensorRef => "a tensor",
        _ => value.GetType().Name,
    };
}
