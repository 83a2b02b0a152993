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
    private static readonly Assembly Core = typeof(IHostEnvironment).Assembly;

    private static readonly Type VersionInfoType = CoreType("Microsoft.ML.VersionInfo");
    private static readonly Type LoadContextType = CoreType("Microsoft.ML.ModelLoadContext");
    private static readonly Type SignatureLoadModel = CoreType("Microsoft.ML.SignatureLoadModel");
    private static readonly ConstructorInfo VersionInfoCtor = VersionInfoType.GetConstructor(Any, [typeof(string), typeof(uint), typeof(uint), typeof(uint), typeof(string), typeof(string), typeof(string)])
        ?? throw Missing("VersionInfo(string, uint, uint, uint, string, string, string)");

    private static readonly MethodInfo SaveCheckAtModel = Method(typeof(ModelSaveContext), "CheckAtModel", []);
    private static readonly MethodInfo SaveSetVersionInfo = Method(typeof(ModelSaveContext), "SetVersionInfo", [VersionInfoType]);
    private static readonly FieldInfo SaveWriterField = Field(typeof(ModelSaveContext), "Writer");
    private static readonly MethodInfo SaveBinaryStreamMethod = Method(typeof(ModelSaveContext), "SaveBinaryStream", [typeof(string), typeof(Action<BinaryWriter>)]);

    private static readonly MethodInfo LoadCheckAtModel = Method(LoadContextType, "CheckAtModel", [VersionInfoType]);
    private static readonly FieldInfo LoadReaderField = Field(LoadContextType, "Reader");
    private static readonly MethodInfo TryLoadBinaryStreamMethod = Method(LoadContextType, "TryLoadBinaryStream", [typeof(string), typeof(Action<BinaryReader>)]);

    private static readonly ConstructorInfo ShapeColumnCtor = typeof(SchemaShape.Column).GetConstructor(Any, [typeof(string), typeof(SchemaShape.Column.VectorKind), typeof(DataViewType), typeof(bool), typeof(SchemaShape)])
        ?? throw Missing("SchemaShape.Column(string, VectorKind, DataViewType, bool, SchemaShape)");

    private static readonly ConditionalWeakTable<ComponentCatalog, HashSet<string>> Registered = new();

    /// <summary>Identity of a saved model part: its 8-character signature, version and loader.</summary>
    public sealed record ModelVersion(string Signature, uint Version, string LoaderSignature, Assembly LoaderAssembly)
    {
        internal object ToVersionInfo() =>
            VersionInfoCtor.Invoke([Signature, Version, Version, Version, LoaderAssembly.FullName, LoaderSignature, null]);
    }

    /// <summary>Starts a model entry: checks the context and records our signature, version and loader.</summary>
    public static BinaryWriter BeginSave(ModelSaveContext ctx, ModelVersion version)
    {
        Invoke(SaveCheckAtModel, ctx, []);
        Invoke(SaveSetVersionInfo, ctx, [version.ToVersionInfo()]);
        return (BinaryWriter)SaveWriterField.GetValue(ctx)!;
    }

    /// <summary>Writes a sibling entry of the model's directory in the zip (e.g. the weights).</summary>
    public static void SaveBinaryStream(ModelSaveContext ctx, string name, Action<BinaryWriter> write) => Invoke(SaveBinaryStreamMethod, ctx, [name, write]);

    /// <summary>Checks that the entry being loaded is ours and readable, and returns its reader.</summary>
    public static BinaryReader BeginLoad(object ctx, ModelVersion version)
    {
        Invoke(LoadCheckAtModel, ctx, [version.ToVersionInfo()]);
        return (BinaryReader)LoadReaderField.GetValue(ctx)!;
    }

    /// <summary>Reads a sibling entry written by <see cref="SaveBinaryStream"/>; false when it is absent.</summary>
    public static bool TryLoadBinaryStream(object ctx, string name, Action<BinaryReader> read) => (bool)Invoke(TryLoadBinaryStreamMethod, ctx, [name, read])!;

    /// <summary>
    /// Registers <paramref name="create"/> (a static <c>T Create(IHostEnvironment env, object ctx)</c>) as the loader
    /// of <paramref name="loaderSignature"/> in <paramref name="catalog"/>, so <c>mlContext.Model.Load</c> finds it.
    /// Idempotent per catalog.
    /// </summary>
    public static void RegisterLoader(ComponentCatalog catalog, Type instanceType, MethodInfo create, string loaderSignature)
    {
        HashSet<string> done = Registered.GetValue(catalog, _ => new HashSet<string>(StringComparer.OrdinalIgnoreCase));
        // ComponentCatalog.AddClass takes no lock of its own (RegisterAssembly holds the catalog's _lock around it).
        object gate = typeof(ComponentCatalog).GetField("_lock", Any)?.GetValue(catalog) ?? done;
        lock (gate)
        {
            // Load names are matched case-insensitively, and a second class under the same name is an error.
            if (!done.Add(loaderSignature)) return;
            Type attributeType = CoreType("Microsoft.ML.LoadableClassAttribute");
            object attribute = Activator.CreateInstance(attributeType, instanceType, null, SignatureLoadModel, "Bone " + loaderSignature, new[] { loaderSignature })!;
            Type infoType = typeof(ComponentCatalog).GetNestedType("LoadableClassInfo", Any) ?? throw Missing("ComponentCatalog.LoadableClassInfo");
            ConstructorInfo infoCtor = infoType.GetConstructors(Any).SingleOrDefault(c => c.GetParameters().Length == 5) ?? throw Missing("LoadableClassInfo(attr, getter, ctor, create, requireEnvironment)");
            object info = infoCtor.Invoke([attribute, null, null, create, true]);
            MethodInfo addClass = typeof(ComponentCatalog).GetMethod("AddClass", Any) ?? throw Missing("ComponentCatalog.AddClass");
            Invoke(addClass, catalog, [info, new[] { loaderSignature }, false]);
        }
    }

    /// <summary>A <see cref="SchemaShape.Column"/> (its constructor is internal).</summary>
    public static SchemaShape.Column ShapeColumn(string name, SchemaShape.Column.VectorKind kind, DataViewType itemType, bool isKey, SchemaShape? annotations = null) =>
        (SchemaShape.Column)ShapeColumnCtor.Invoke([name, kind, itemType, isKey, annotations]);

    private static object? Invoke(MethodInfo method, object? target, object?[] args)
    {
        try { return method.Invoke(target, args); }
        catch (TargetInvocationException e) when (e.InnerException is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException).Throw();
            throw;
        }
    }

    private static Type CoreType(string name) => Core.GetType(name, throwOnError: false) ?? throw Missing(name);

    private static MethodInfo Method(Type type, string name, Type[] parameters) =>
        type.GetMethod(name, Any, parameters) ?? throw Missing($"{type.Name}.{name}({string.Join(", ", parameters.Select(p => p.Name))})");

    private static FieldInfo Field(Type type, string name) => type.GetField(name, Any) ?? throw Missing($"{type.Name}.{name}");

    private static InvalidOperationException Missing(string member) =>
        new($"ML.NET internal '{member}' was not found; Microsoft.ML.Bone's model persistence supports Microsoft.ML 5.0.1.");
}
