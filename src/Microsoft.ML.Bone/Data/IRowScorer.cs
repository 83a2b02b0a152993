namespace Microsoft.ML.Bone.Data;

/// <summary>A column that scoring appends to the input.</summary>
internal sealed record AddedColumn(string Name, DataViewType Type, DataViewSchema.Annotations? Annotations = null);

/// <summary>
/// Turns batches of input rows into values of <see cref="Columns"/>. Implemented by each task's transformer; the
/// data view and row mapper below take care of cursors, batching and caching.
/// </summary>
internal interface IRowScorer
{
    /// <summary>The appended columns, in order.</summary>
    IReadOnlyList<AddedColumn> Columns { get; }

    /// <summary>Input columns the scorer reads.</summary>
    IReadOnlyList<string> InputColumnNames { get; }

    /// <summary>Rows scored together.</summary>
    int BatchSize { get; }

    /// <summary>A reader of the scorer's inputs from the row <paramref name="row"/> is positioned on.</summary>
    Func<object> CreateInputReader(DataViewRow row);

    /// <summary>Values of every added column for each input: result[row][column].</summary>
    object[][] Score(IReadOnlyList<object> inputs);
}
