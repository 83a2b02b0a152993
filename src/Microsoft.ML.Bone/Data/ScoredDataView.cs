namespace Microsoft.ML.Bone.Data;

/// <summary>
/// The input data with the scorer's columns appended, computed lazily and in batches as a cursor moves. Scoring
/// reads ahead with a second cursor over the same input (ML.NET data views are repeatable), so the passthrough
/// columns and the scored values stay aligned row by row.
/// </summary>
internal sealed class ScoredDataView : IDataView
{
    private readonly IDataView _input;
    private readonly IRowScorer _scorer;

    public ScoredDataView(IDataView input, IRowScorer scorer)
    {
        _input = input;
        _scorer = scorer;
        Schema = BuildSchema(input.Schema, scorer);
    }

    /// <summary>What computes the added columns.</summary>
    public IRowScorer Scorer => _scorer;

    public bool CanShuffle => false;

    public DataViewSchema Schema { get; }

    public long? GetRowCount() => _input.GetRowCount();

    public DataViewRowCursor GetRowCursor(IEnumerable<DataViewSchema.Column> columnsNeeded, Random? rand = null)
    {
        var needed = columnsNeeded.ToList();
        bool scoring = needed.Any(c => c.Index >= _input.Schema.Count);
        var inputColumns = needed.Where(c => c.Index < _input.Schema.Count).Select(c => _input.Schema[c.Index]);
        if (scoring) inputColumns = inputColumns.Concat(_scorer.InputColumnNames.Select(n => _input.Schema[n]));
        DataViewRowCursor main = _input.GetRowCursor(inputColumns.Distinct());
        DataViewRowCursor? ahead = scoring ? _input.GetRowCursor(_scorer.InputColumnNames.Select(n => _input.Schema[n])) : null;
        return new Cursor(this, main, ahead, needed.Where(c => c.Index >= _input.Schema.Count).Select(c => c.Index).ToHashSet());
    }

    public DataViewRowCursor[] GetRowCursorSet(IEnumerable<DataViewSchema.Column> columnsNeeded, int n, Random? rand = null) =>
        [GetRowCursor(columnsNeeded, rand)];

    /// <summary>Input columns followed by the added ones (an added column hides an input column of the same name).</summary>
    public static DataViewSchema BuildSchema(DataViewSchema input, IRowScorer scorer)
    {
        var builder = new DataViewSchema.Builder();
        builder.AddColumns(input);
        foreach (AddedColumn c in scorer.Columns) builder.AddColumn(c.Name, c.Type, c.Annotations);
        return builder.ToSchema();
    }

    private sealed class Cursor : DataViewRowCursor
    {
        private readonly ScoredDataView _parent;
        private readonly DataViewRowCursor _main;
        private readonly DataViewRowCursor? _ahead;
        private readonly HashSet<int> _activeAdded;
        private readonly Func<object>? _readInput;
        private object[][] _batch = [];
        private long _batchStart;

        public Cursor(ScoredDataView parent, DataViewRowCursor main, DataViewRowCursor? ahead, HashSet<int> activeAdded)
        {
            _parent = parent;
            _main = main;
            _ahead = ahead;
            _activeAdded = activeAdded;
            _readInput = ahead is null ? null : parent._scorer.CreateInputReader(ahead);
        }

        public override DataViewSchema Schema => _parent.Schema;

        public override long Position => _main.Position;

        public override long Batch => _main.Batch;

        public override ValueGetter<DataViewRowId> GetIdGetter() => _main.GetIdGetter();

        public override bool IsColumnActive(DataViewSchema.Column column) =>
            column.Index < _parent._input.Schema.Count ? _main.IsColumnActive(_parent._input.Schema[column.Index]) : _activeAdded.Contains(column.Index);

        public override bool MoveNext()
        {
            if (!_main.MoveNext()) return false;
            if (_ahead is not null && _main.Position >= _batchStart + _batch.Length) ScoreNextBatch();
            return true;
        }

        private void ScoreNextBatch()
        {
            var inputs = new List<object>(_parent._scorer.BatchSize);
            _batchStart = _main.Position;
            long first = -1;
            while (inputs.Count < _parent._scorer.BatchSize && _ahead!.MoveNext())
            {
                if (inputs.Count == 0) first = _ahead.Position;
                inputs.Add(_readInput!());
            }
            if (inputs.Count == 0 || first != _batchStart)
                throw new InvalidOperationException("The input data view returned different rows on two passes; scoring needs a repeatable data view.");
            _batch = _parent._scorer.Score(inputs);
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            int inputCount = _parent._input.Schema.Count;
            if (column.Index < inputCount) return _main.GetGetter<TValue>(_parent._input.Schema[column.Index]);
            if (!_activeAdded.Contains(column.Index)) throw new InvalidOperationException($"Column '{column.Name}' was not requested when the cursor was created.");
            int added = column.Index - inputCount;
            return (ref TValue value) => value = AddedValues.Convert<TValue>(_batch[_main.Position - _batchStart][added], column);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _main.Dispose();
                _ahead?.Dispose();
            }
            base.Dispose(disposing);
        }
    }
}
