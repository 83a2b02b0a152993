namespace Microsoft.ML.Bone.Data;

/// <summary>
/// Row-at-a-time form of <see cref="ScoredDataView"/> for <c>PredictionEngine</c>: added columns are scored on first
/// access for the current input row and cached until the row moves.
/// </summary>
internal sealed class ScoringRowMapper : IRowToRowMapper
{
    private readonly IRowScorer _scorer;

    public ScoringRowMapper(DataViewSchema inputSchema, IRowScorer scorer)
    {
        InputSchema = inputSchema;
        _scorer = scorer;
        OutputSchema = ScoredDataView.BuildSchema(inputSchema, scorer);
    }

    public DataViewSchema InputSchema { get; }

    public DataViewSchema OutputSchema { get; }

    public IEnumerable<DataViewSchema.Column> GetDependencies(IEnumerable<DataViewSchema.Column> dependingColumns)
    {
        var columns = dependingColumns.ToList();
        var needed = columns.Where(c => c.Index < InputSchema.Count).Select(c => InputSchema[c.Index]).ToList();
        if (columns.Any(c => c.Index >= InputSchema.Count)) needed.AddRange(_scorer.InputColumnNames.Select(n => InputSchema[n]));
        return needed.Distinct();
    }

    public DataViewRow GetRow(DataViewRow input, IEnumerable<DataViewSchema.Column> activeColumns) =>
        new Row(this, input, activeColumns.Select(c => c.Index).ToHashSet());

    private sealed class Row(ScoringRowMapper parent, DataViewRow input, HashSet<int> active) : DataViewRow
    {
        private readonly Func<object> _read = parent._scorer.CreateInputReader(input);
        private long _scoredPosition = -1;
        private object[] _values = [];

        public override DataViewSchema Schema => parent.OutputSchema;

        public override long Position => input.Position;

        public override long Batch => input.Batch;

        public override ValueGetter<DataViewRowId> GetIdGetter() => input.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) =>
            column.Index < parent.InputSchema.Count ? input.IsColumnActive(parent.InputSchema[column.Index]) : active.Contains(column.Index);

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            if (column.Index < parent.InputSchema.Count) return input.GetGetter<TValue>(parent.InputSchema[column.Index]);
            int added = column.Index - parent.InputSchema.Count;
            return (ref TValue value) =>
            {
                if (_scoredPosition != input.Position || _values.Length == 0)
                {
                    _values = parent._scorer.Score([_read()])[0];
                    _scoredPosition = input.Position;
                }
                value = AddedValues.Convert<TValue>(_values[added], column);
            };
        }
    }
}
