using System.Runtime.CompilerServices;
using Microsoft.ML.Bone.Evaluation;
using Microsoft.ML.Bone.Persistence;

namespace Microsoft.ML.Bone;

/// <summary>
/// Bone fine-tuning for one <see cref="MLContext"/>: <c>mlContext.Bone</c>. (Loading needs nothing from here:
/// <c>mlContext.Model.Load</c> finds the Bone transformers in any context.)
/// </summary>
public sealed partial class BoneCatalog
{
    private static readonly ConditionalWeakTable<MLContext, BoneCatalog> Catalogs = new();

    private BoneCatalog(MLContext context) => Context = context;

    /// <summary>The context this catalog belongs to.</summary>
    public MLContext Context { get; }

    internal static BoneCatalog For(MLContext context) => Catalogs.GetValue(context, c => new BoneCatalog(c));

    /// <summary>
    /// Loads a model zip saved with <c>mlContext.Model.Save</c>. <paramref name="baseModelPath"/> points at the base
    /// checkpoint when it moved since training (its weights must still match the recorded SHA-256).
    /// </summary>
    public ITransformer LoadModel(string path, out DataViewSchema inputSchema, string? baseModelPath = null)
    {
        using var stream = IO.InputFile.OpenRead(path);
        return Load(stream, path, out inputSchema, baseModelPath);
    }

    /// <summary>
    /// Loads a model zip from <paramref name="stream"/> (as <c>mlContext.Model.Load(stream, ...)</c>), surfacing the
    /// loader's own error; <paramref name="baseModelPath"/> points at the base checkpoint when it moved since training.
    /// </summary>
    public ITransformer LoadModel(Stream stream, out DataViewSchema inputSchema, string? baseModelPath = null)
    {
        ArgumentNullException.ThrowIfNull(stream);
        return Load(stream, ZipSource, out inputSchema, baseModelPath);
    }

    private const string ZipSource = "model zip";

    private ITransformer Load(Stream stream, string source, out DataViewSchema inputSchema, string? baseModelPath)
    {
        Persistence.ModelZipBounds.Check(stream, source);
        using (BoneLoaders.OverrideBaseModel(baseModelPath))
        {
            try
            {
                return Context.Model.Load(stream, out inputSchema);
            }
            catch (Exception e) when (e is System.Reflection.TargetInvocationException or InvalidOperationException or FormatException)
            {
                // ML.NET wraps a loader's error in reflection exceptions; surface the error that says what is wrong.
                for (Exception? x = e; x is not null; x = x.InnerException)
                {
                    // The loader knows only that it reads "model zip"; here the zip has a name.
                    if (x is InvalidDataException && x.Message.StartsWith(ZipSource + ":", StringComparison.Ordinal) && source != ZipSource)
                        throw new InvalidDataException(source + x.Message[ZipSource.Length..], x);
                    if (x is IOException or InvalidDataException or ArgumentException or UnauthorizedAccessException or NotSupportedException)
                        System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(x).Throw();
                }
                // ML.NET's own decoding errors (its header, its streams, versions it cannot read) mean a damaged zip.
                Exception innermost = Innermost(e);
                if (innermost is FormatException || (innermost is InvalidOperationException && FromMlNet(innermost)))
                    throw new InvalidDataException($"{source}: not a readable ML.NET model zip ({innermost.Message}).", e);
                throw;
            }
        }
    }

    private static bool FromMlNet(Exception e) =>
        e.TargetSite?.DeclaringType?.Assembly.GetName().Name is { } assembly && assembly.StartsWith("Microsoft.ML", StringComparison.Ordinal) && !assembly.StartsWith("Microsoft.ML.Bone", StringComparison.Ordinal);

    /// <summary>
    /// Saves a model zip as <c>mlContext.Model.Save</c> does, but atomically: the zip is written to a temporary file
    /// beside <paramref name="path"/>, flushed to disk and renamed over it, so an interrupted save (a kill, a full disk)
    /// leaves the earlier model at <paramref name="path"/> intact. ML.NET's own scratch folder goes under this process's
    /// temporary folder, which the next run removes if this one is killed.
    /// </summary>
    public void SaveModel(ITransformer model, DataViewSchema inputSchema, string path)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        if (Directory.Exists(path)) throw new IOException($"{path}: is a directory; give the model zip's file name.");
        var saver = new MLContext { TempFilePath = IO.TempPaths.ProcessDirectory };
        IO.AtomicFile.Write(path, stream => saver.Model.Save(model, inputSchema, stream));
    }

    private static Exception Innermost(Exception e)
    {
        while (e.InnerException is not null) e = e.InnerException;
        return e;
    }

    /// <summary>
    /// GLUE's official metrics for <paramref name="task"/> on scored data, next to ML.NET's standard ones:
    /// multiclass metrics for classification tasks, regression metrics for STS-B.
    /// </summary>
    public GlueEvaluation EvaluateGlue(IDataView scored, GlueTask task, string labelColumnName = "Label", string scoreColumnName = "Score", string predictedLabelColumnName = "PredictedLabel") =>
        GlueEvaluator.Evaluate(Context, scored, task, labelColumnName, scoreColumnName, predictedLabelColumnName);
}
