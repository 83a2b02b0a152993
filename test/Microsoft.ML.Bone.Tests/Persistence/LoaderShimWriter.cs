// Writes Microsoft.ML.Bone.Loaders.dll: an assembly with no code, only the assembly attributes by which ML.NET finds
// the loaders of our transformers.
//
// Why: mlContext.Model.Load registers the assembly a zip names as its loader and scans it for
// [assembly: LoadableClass(...)] attributes. That attribute is internal to Microsoft.ML.Core, so C# cannot write it;
// this file writes the attribute in metadata directly, together with IgnoresAccessChecksTo("Microsoft.ML.Core"), which
// lets the runtime instantiate an internal attribute of that assembly. Each attribute names a transformer type (which
// holds the static Create(IHostEnvironment, ModelLoadContext) loader) and its loader signature.
//
// The shim is committed (src/Microsoft.ML.Bone/Loaders/Microsoft.ML.Bone.Loaders.dll, a few hundred bytes of
// metadata) because MSBuild's inline tasks cannot reference System.Reflection.Metadata. LoaderShimTests writes it
// again from this file and fails unless the committed bytes are exactly these; BONE_WRITE_LOADER_SHIM=1 rewrites it.
using System;
using System.Collections.Generic;
using System.IO;
using System.Reflection;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;
using System.Security.Cryptography;
using System.Text;

namespace Microsoft.ML.Bone.Tests.Persistence;

internal sealed class LoaderShimEntry
{
    public LoaderShimEntry(string instanceType, string instanceAssembly, string loaderSignature, string userName) =>
        (InstanceType, InstanceAssembly, LoaderSignature, UserName) = (instanceType, instanceAssembly, loaderSignature, userName);

    public string InstanceType { get; }
    public string InstanceAssembly { get; }
    public string LoaderSignature { get; }
    public string UserName { get; }

    public override string ToString() => $"{InstanceType}|{InstanceAssembly}|{LoaderSignature}|{UserName}";
}

internal static class LoaderShimWriter
{
    /// <summary>The shim's bytes for <paramref name="entries"/> (the same bytes for the same input).</summary>
    public static byte[] Write(string assemblyName, Version version, AssemblyName mlCore, AssemblyName systemRuntime, IReadOnlyList<LoaderShimEntry> entries)
    {
        var metadata = new MetadataBuilder();
        var il = new BlobBuilder();
        var bodies = new MethodBodyStreamEncoder(il);

        var runtimeRef = metadata.AddAssemblyReference(metadata.GetOrAddString(systemRuntime.Name!), systemRuntime.Version!, default,
            metadata.GetOrAddBlob(systemRuntime.GetPublicKeyToken() ?? []), default, default);
        var coreRef = metadata.AddAssemblyReference(metadata.GetOrAddString(mlCore.Name!), mlCore.Version!, default,
            metadata.GetOrAddBlob(mlCore.GetPublicKeyToken() ?? []), default, default);

        metadata.AddModule(0, metadata.GetOrAddString(assemblyName + ".dll"), metadata.GetOrAddGuid(Mvid(assemblyName, version, entries)), default, default);
        var assembly = metadata.AddAssembly(metadata.GetOrAddString(assemblyName), version, default, default, default, AssemblyHashAlgorithm.Sha1);

        var attributeRef = metadata.AddTypeReference(runtimeRef, metadata.GetOrAddString("System"), metadata.GetOrAddString("Attribute"));
        var attributeCtor = metadata.AddMemberReference(attributeRef, metadata.GetOrAddString(".ctor"), Signature(s => s.MethodSignature(isInstanceMethod: true).Parameters(0, r => r.Void(), p => { })));
        var loadableRef = metadata.AddTypeReference(coreRef, metadata.GetOrAddString("Microsoft.ML"), metadata.GetOrAddString("LoadableClassAttribute"));
        var systemType = metadata.AddTypeReference(runtimeRef, metadata.GetOrAddString("System"), metadata.GetOrAddString("Type"));
        // LoadableClassAttribute(Type instType, Type loaderType, Type argType, Type sigType, string userName, params string[] loadNames)
        var loadableCtor = metadata.AddMemberReference(loadableRef, metadata.GetOrAddString(".ctor"), Signature(s => s.MethodSignature(isInstanceMethod: true).Parameters(6, r => r.Void(), p =>
        {
            for (int i = 0; i < 4; i++) p.AddParameter().Type().Type(systemType, isValueType: false);
            p.AddParameter().Type().String();
            p.AddParameter().Type().SZArray().String();
        })));

        // <Module>, then IgnoresAccessChecksToAttribute with its one constructor (calls Attribute's).
        metadata.AddTypeDefinition(default, default, metadata.GetOrAddString("<Module>"), default, MetadataTokens.FieldDefinitionHandle(1), MetadataTokens.MethodDefinitionHandle(1));
        var ctorIl = new InstructionEncoder(new BlobBuilder());
        ctorIl.OpCode(ILOpCode.Ldarg_0);
        ctorIl.Call(attributeCtor);
        ctorIl.OpCode(ILOpCode.Ret);
        int body = bodies.AddMethodBody(ctorIl);
        var ignoresCtor = metadata.AddMethodDefinition(
            MethodAttributes.Public | MethodAttributes.HideBySig | MethodAttributes.SpecialName | MethodAttributes.RTSpecialName,
            MethodImplAttributes.IL, metadata.GetOrAddString(".ctor"),
            Signature(s => s.MethodSignature(isInstanceMethod: true).Parameters(1, r => r.Void(), p => p.AddParameter().Type().String())),
            body, MetadataTokens.ParameterHandle(1));
        metadata.AddParameter(ParameterAttributes.None, metadata.GetOrAddString("assemblyName"), 1);
        metadata.AddTypeDefinition(TypeAttributes.NotPublic | TypeAttributes.Sealed | TypeAttributes.BeforeFieldInit,
            metadata.GetOrAddString("System.Runtime.CompilerServices"), metadata.GetOrAddString("IgnoresAccessChecksToAttribute"),
            attributeRef, MetadataTokens.FieldDefinitionHandle(1), ignoresCtor);

        metadata.AddCustomAttribute(assembly, ignoresCtor, metadata.GetOrAddBlob(Blob(b => new BlobEncoder(b).CustomAttributeSignature(
            f => f.AddArgument().Scalar().Constant(mlCore.Name), n => n.Count(0)))));
        foreach (var entry in entries)
        {
            string instance = $"{entry.InstanceType}, {entry.InstanceAssembly}";
            metadata.AddCustomAttribute(assembly, loadableCtor, metadata.GetOrAddBlob(Blob(b => new BlobEncoder(b).CustomAttributeSignature(f =>
            {
                f.AddArgument().Scalar().SystemType(instance);
                f.AddArgument().Scalar().SystemType(instance);
                f.AddArgument().Scalar().SystemType(null);
                f.AddArgument().Scalar().SystemType($"Microsoft.ML.SignatureLoadModel, {mlCore.Name}");
                f.AddArgument().Scalar().Constant(entry.UserName);
                var names = f.AddArgument().Vector().Count(1);
                names.AddLiteral().Scalar().Constant(entry.LoaderSignature);
            }, n => n.Count(0)))));
        }

        BlobHandle Signature(Action<BlobEncoder> write) => metadata.GetOrAddBlob(Blob(b => write(new BlobEncoder(b))));

        var pe = new ManagedPEBuilder(PEHeaderBuilder.CreateLibraryHeader(), new MetadataRootBuilder(metadata), il,
            deterministicIdProvider: content => BlobContentId.FromHash(SHA256.HashData(Concat(content))));
        var output = new BlobBuilder();
        pe.Serialize(output);
        return output.ToArray();
    }

    private static BlobBuilder Blob(Action<BlobBuilder> write)
    {
        var b = new BlobBuilder();
        write(b);
        return b;
    }

    private static byte[] Concat(IEnumerable<Blob> blobs)
    {
        using var all = new MemoryStream();
        foreach (Blob blob in blobs) { var segment = blob.GetBytes(); all.Write(segment.Array!, segment.Offset, segment.Count); }
        return all.ToArray();
    }

    private static Guid Mvid(string assemblyName, Version version, IReadOnlyList<LoaderShimEntry> entries)
    {
        var text = new StringBuilder(assemblyName).Append(version);
        foreach (var e in entries) text.Append('|').Append(e);
        byte[] hash = SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString()));
        return new Guid(hash.AsSpan(0, 16));
    }
}
