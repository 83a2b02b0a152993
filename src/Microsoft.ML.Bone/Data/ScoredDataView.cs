namespace Microsoft.ML.Bone.Data;

/// <summary>
/// The input data with the scorer's columns appended, computed lazily and in batches as a cursor moves. One pass over
/// the input serves everything: when scored columns are asked for, the cursor reads a batch of input rows, keeps a
/// copy of their requested input values, scores the batch, then hands the rows out one by one; otherwise it passes the
/// input through. So one-pass inputs (a stream enumerated once) score as ML.NET's own transformers do.
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
        var activeAdded = needed.Where(c => c.Index >= _input.Schema.Count).Select(c => c.Index).ToHashSet();
        var inputColumns = needed.Where(c => c.Index < _input.Schema.Count).Select(c => _input.Schema[c.Index]).ToList();
        if (activeAdded.Count == 0) return new PassThroughCursor(this, _input.GetRowCursor(inputColumns));
        DataViewRowCursor input = _input.GetRowCursor(inputColumns.Concat(_scorer.InputColumnNames.Select(n => _input.Schema[n])).Distinct());
        return new BatchCursor(this, input, inputColumns, activeAdded);
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

    /// <summary>No scored column asked for: the input rows as they are.</summary>
    private sealed class PassThroughCursor(ScoredDataView parent, DataViewRowCursor input) : DataViewRowCursor
    {
        public override DataViewSchema Schema => parent.Schema;
        public override long Position => input.Position;
        public override long Batch => input.Batch;
        public override ValueGetter<DataViewRowId> GetIdGetter() => input.GetIdGetter();
        public override bool MoveNext() => input.MoveNext();

        public override bool IsColumnActive(DataViewSchema.Column column) =>
            column.Index < parent._input.Schema.Count && input.IsColumnActive(parent._input.Schema[column.Index]);

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column) =>
            column.Index < parent._input.Schema.Count
                ? input.GetGetter<TValue>(parent._input.Schema[column.Index])
                : throw new InvalidOperationException($"Column '{column.Name}' was not requested when the cursor was created.");

        protected override void Dispose(bool disposing)
        {
            if (disposing) input.Dispose();
            base.Dispose(disposing);
        }
    }

    /// <summary>Reads a batch of input rows (keeping copies of the requested input values), scores it, serves it.</summary>
    private sealed class BatchCursor : DataViewRowCursor
    {
        private readonly ScoredDataView _parent;
        private readonly DataViewRowCursor _input;
        private readonly HashSet<int> _activeAdded;
        private readonly Dictionary<int, ColumnBuffer> _buffers;
        private readonly Func<object> _readInput;
        private readonly ValueGetter<DataViewRowId> _id;
        private readonly List<DataViewRowId> _ids = [];
        private object[][] _batch = [];
        private int _index = -1;
        private long _position = -1;
        private bool _inputDone;

        public BatchCursor(ScoredDataView parent, DataViewRowCursor input, IReadOnlyList<DataViewSchema.Column> inputColumns, HashSet<int> activeAdded)
        {
            _parent = parent;
            _input = input;
            _activeAdded = activeAdded;
            _buffers = inputColumns.ToDictionary(c => c.Index, c => ColumnBuffer.Create(input, c));
            _readInput = parent._scorer.CreateInputReader(input);
            _id = input.GetIdGetter();
        }

        public override DataViewSchema Schema => _parent.Schema;

        public override long Position => _position;

        public override long Batch => 0;

        public override ValueGetter<DataViewRowId> GetIdGetter() => (ref DataViewRowId value) => value = _ids[_index];

        public override bool IsColumnActive(DataViewSchema.Column column) =>
            column.Index < _parent._input.Schema.Count ? _buffers.ContainsKey(column.Index) : _activeAdded.Contains(column.Index);

        public override bool MoveNext()
        {
            if (_index + 1 >= _batch.Length && !Fill()) return false;
            _index++;
            _position++;
            return true;
        }

        private bool Fill()
        {
            if (_inputDone) return false;
            foreach (ColumnBuffer b in _buffers.Values) b.Clear();
            _ids.Clear();
            var inputs = new List<object>(_parent._scorer.BatchSize);
            while (inputs.Count < _parent._scorer.BatchSize && _input.MoveNext())
            {
                foreach (ColumnBuffer b in _buffers.Values) b.Capture();
                DataViewRowId id = default;
                _id(ref id);
                _ids.Add(id);
                inputs.Add(_readInput());
            }
            if (inputs.Count < _parent._scorer.BatchSize) _inputDone = true;
            _index = -1;
            _batch = inputs.Count == 0 ? [] : _parent._scorer.Score(inputs);
            return _batch.Length > 0;
        }

        public override ValueGetter<TValue> GetGetter<TValue>(DataViewSchema.Column column)
        {
            int inputCount = _parent._input.Schema.Count;
            if (column.Index < inputCount)
            {
                if (!_buffers.TryGetValue(column.Index, out ColumnBuffer? buffer)) throw new InvalidOperationException($"Column '{column.Name}' was not requested when the cursor was created.");
                return buffer.Getter<TValue>(() => _index);
            }
            if (!_activeAdded.Contains(column.Index)) throw new InvalidOperationException($"Column '{column.Name}' was not requested when the cursor was created.");
            int added = column.Index - inputCount;
            return (ref TValue value) => value = AddedValues.Convert<TValue>(_batch[_index][added], column);
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) _input.Dispose();
            base.Dispose(disposing);
        }
    }
}
