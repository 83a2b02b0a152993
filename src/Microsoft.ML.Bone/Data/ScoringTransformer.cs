using Microsoft.ML.Bone.Data;

namespace Microsoft.ML.Bone;

/// <summary>
/// What every Bone transformer shares: its columns are appended lazily and in batches by a scorer, it maps single rows
/// for <c>PredictionEngine</c>, and it checks the input schema first.
/// </summary>
public abstract class ScoringTransformer : ITransformer, IDisposable
{
    private readonly IRowScorer _scorer;

    private protected ScoringTransformer(IRowScorer scorer) => _scorer = scorer;

    /// <inheritdoc/>
    public bool IsRowToRowMapper => true;

    /// <inheritdoc/>
    public DataViewSchema GetOutputSchema(DataViewSchema inputSchema)
    {
        CheckInput(inputSchema);
        return ScoredDataView.BuildSchema(inputSchema, _scorer);
    }

    /// <inheritdoc/>
    public IDataView Transform(IDataView input)
    {
        CheckInput(input.Schema);
        return new ScoredDataView(input, _scorer);
    }

    /// <inheritdoc/>
    public IRowToRowMapper GetRowToRowMapper(DataViewSchema inputSchema)
    {
        CheckInput(inputSchema);
        return new ScoringRowMapper(inputSchema, _scorer);
    }

    void ICanSaveModel.Save(ModelSaveContext ctx) => Save(ctx);

    /// <summary>Writes the model into an ML.NET zip entry.</summary>
    private protected abstract void Save(ModelSaveContext ctx);

    /// <summary>Throws, naming the column, when the input lacks what the scorer reads.</summary>
    private protected abstract void CheckInput(DataViewSchema schema);

    /// <inheritdoc/>
    public abstract void Dispose();
}
