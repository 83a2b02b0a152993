using System.Reflection;
using System.Runtime.CompilerServices;
using Microsoft.ML.Runtime;

namespace Microsoft.ML.Bone.Persistence;

/// <summary>
/// The one place that reaches ML.NET's internal persistence API by reflection. ML.NET lets only its own
/// assemblies write model-zip entries (<c>ModelSaveContext</c>'s members are internal) and register loaders
/// (<c>LoadableClassAttribute</c>, <c>ComponentCatalog.AddClass</c>); this bridge gives a third-party transformer
/// the same route. Pinned to Microsoft.ML 5.0.1: a member that is not found stops with an error that says so.
/// </summary>
internal static class MlNetInternals
{
    private const BindingFlags Any = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static;

    // Looked up on first use; a missing member (another Microsoft.ML version) is one clear error on every use,
    // never a TypeInitializationException.
    private static readonly Lazy<Members> Api = new(() => new Members(typeof(IHostEnvironment).Assembly), LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Looks every member up in <paramref name="core"/> (tests point it at an assembly that lacks them).</summary>
    internal static void CheckMembers(Assembly core) => _ = new Members(core);

    /// <summary>
    /// Identity of a saved model part, as ML.NET's <c>VersionInfo</c>: its 8-character signature; the version it is
    /// written with; the oldest reader that can read it; and the oldest version this code can still read.
    /// </summary>
    public sealed record ModelVersion(string Signature, uint Written, uint Readable, uint WeCanReadBack, string LoaderSignature)
    {
        internal object ToVersionInfo() =>
            Api.Value.VersionInfoCtor.Invoke([Signature, Written, Readable, WeCanReadBack, BoneLoaders.AssemblyName, LoaderSignature, null]);
    }

    /// <summary>Starts a model entry: checks the context and records our signature, version and loader.</summary>
    public static BinaryWriter BeginSave(ModelSaveContext ctx, ModelVersion version)
    {
        Members m = Api.Value;
        Invoke(m.SaveCheckAtModel, ctx, []);
        Invoke(m.SaveSetVersionInfo, ctx, [version.ToVersionInfo()]);
        return (BinaryWriter)m.SaveWriterField.GetValue(ctx)!;
    }

    /// <summary>Writes a sibling entry of the model's directory in the zip (e.g. the weights).</summary>
    public static void SaveBinaryStream(ModelSaveContext ctx, string name, Action<BinaryWriter> write) => Invoke(Api.Value.SaveBinaryStreamMethod, ctx, [name, write]);

    /// <summary>Checks that the entry being loaded is ours and readable, and returns its reader.</summary>
    public static BinaryReader BeginLoad(object ctx, ModelVersion version)
    {
        Members m = Api.Value;
        try { Invoke(m.LoadCheckAtModel, ctx, [version.ToVersionInfo()]); }
        catch (Exception e) when (e is FormatException or InvalidOperationException or InvalidDataException && e.Message.Contains("version", StringComparison.OrdinalIgnoreCase))
        {
            throw new InvalidDataException($"model zip: this {version.LoaderSignature} entry was written in a format this Microsoft.ML.Bone cannot read (it reads formats 0x{version.WeCanReadBack:X8} to 0x{version.Written:X8}); retrain or save it again with a matching version. ({e.Message})", e);
        }
        return (BinaryReader)m.LoadReaderField.GetValue(ctx)!;
    }

    /// <summary>Reads a sibling entry written by <see cref="SaveBinaryStream"/>; false when it is absent.</summary>
    public static bool TryLoadBinaryStream(object ctx, string name, Action<BinaryReader> read) => (bool)Invoke(Api.Value.TryLoadBinaryStreamMethod, ctx, [name, read])!;

    /// <summary>
    /// The zip entry <paramref name="name"/> of the directory being loaded, or null when absent: its declared sizes
    /// let a reader refuse an entry before ML.NET extracts it to a temporary file.
    /// </summary>
    public static System.IO.Compression.ZipArchiveEntry? FindEntry(object ctx, string name)
    {
        Members m = Api.Value;
        object repository = m.LoadRepositoryField.GetValue(ctx) ?? throw new InvalidDataException("model zip: the model is not being read from a zip.");
        string directory = (string?)m.LoadDirectoryField.GetValue(ctx) ?? "";
        var entries = (System.Collections.IDictionary)m.RepositoryEntriesField.GetValue(repository)!;
        // The repository's keys: the entry's path with the file system's separator (as its GetPath builds them).
        string key = Path.Combine(directory, name).Replace('/', Path.DirectorySeparatorChar).Replace('\\', Path.DirectorySeparatorChar);
        return entries[key] as System.IO.Compression.ZipArchiveEntry ?? entries[key.Replace(Path.DirectorySeparatorChar, '\\')] as System.IO.Compression.ZipArchiveEntry;
    }

    /// <summary>A <see cref="SchemaShape.Column"/> (its constructor is internal).</summary>
    public static SchemaShape.Column ShapeColumn(string name, SchemaShape.Column.VectorKind kind, DataViewType itemType, bool isKey, SchemaShape? annotations = null) =>
        (SchemaShape.Column)Api.Value.ShapeColumnCtor.Invoke([name, kind, itemType, isKey, annotations]);

    private static object? Invoke(MethodInfo method, object? target, object?[] args)
    {
        try { return method.Invoke(target, args); }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            throw;
        }
    }

    /// <summary>Every internal member the bridge uses, found once.</summary>
    private sealed class Members
    {
        private readonly Assembly _core;

        public readonly ConstructorInfo VersionInfoCtor;
        public readonly MethodInfo SaveCheckAtModel, SaveSetVersionInfo, SaveBinaryStreamMethod, LoadCheckAtModel, TryLoadBinaryStreamMethod;
        public readonly FieldInfo SaveWriterField, LoadReaderField, LoadRepositoryField, LoadDirectoryField, RepositoryEntriesField;
        public readonly ConstructorInfo ShapeColumnCtor;

        public Members(Assembly core)
        {
            _core = core;
            Type versionInfo = CoreType("Microsoft.ML.VersionInfo");
            Type loadContext = CoreType("Microsoft.ML.ModelLoadContext");
            VersionInfoCtor = versionInfo.GetConstructor(Any, [typeof(string), typeof(uint), typeof(uint), typeof(uint), typeof(string), typeof(string), typeof(string)])
                ?? throw Missing("VersionInfo(string, uint, uint, uint, string, string, string)");
            SaveCheckAtModel = Method(typeof(ModelSaveContext), "CheckAtModel", []);
            SaveSetVersionInfo = Method(typeof(ModelSaveContext), "SetVersionInfo", [versionInfo]);
            SaveWriterField = Field(typeof(ModelSaveContext), "Writer");
            SaveBinaryStreamMethod = Method(typeof(ModelSaveContext), "SaveBinaryStream", [typeof(string), typeof(Action<BinaryWriter>)]);
            LoadCheckAtModel = Method(loadContext, "CheckAtModel", [versionInfo]);
            LoadReaderField = Field(loadContext, "Reader");
            LoadRepositoryField = Field(loadContext, "Repository");
            LoadDirectoryField = Field(loadContext, "Directory");
            RepositoryEntriesField = Field(CoreType("Microsoft.ML.RepositoryReader"), "_entries");
            TryLoadBinaryStreamMethod = Method(loadContext, "TryLoadBinaryStream", [typeof(string), typeof(Action<BinaryReader>)]);
            ShapeColumnCtor = typeof(SchemaShape.Column).GetConstructor(Any, [typeof(string), typeof(SchemaShape.Column.VectorKind), typeof(DataViewType), typeof(bool), typeof(SchemaShape)])
                ?? throw Missing("SchemaShape.Column(string, VectorKind, DataViewType, bool, SchemaShape)");
        }

        private Type CoreType(string name) => _core.GetType(name, throwOnError: false) ?? throw Missing(name);

        private static MethodInfo Method(Type type, string name, Type[] parameters) =>
            type.GetMethod(name, Any, parameters) ?? throw Missing($"{type.Name}.{name}({string.Join(", ", parameters.Select(p => p.Name))})");

        private static FieldInfo Field(Type type, string name) => type.GetField(name, Any) ?? throw Missing($"{type.Name}.{name}");
    }

    /// <summary>The error for a member this bridge needs but the loaded Microsoft.ML lacks.</summary>
    internal static InvalidOperationException Missing(string member) =>
        new($"Microsoft.ML.Bone's model persistence needs the ML.NET internal '{member}', which the loaded Microsoft.ML {typeof(IHostEnvironment).Assembly.GetName().Version} does not have; use Microsoft.ML 5.0.1.");
}
