using Microsoft.ML.Bone.Data;
using Microsoft.ML.Bone.Tasks;

namespace Microsoft.ML.Bone;

/// <summary>Scores batches of rows with a trained text classifier: class probabilities and predicted key, or a regression value.</summary>
internal sealed class TextClassificationScorer : IRowScorer
{
    private readonly TextClassificationModel _model;

    public TextClassificationScorer(TextClassificationModel model)
    {
        _model = model;
        var spec = model.Settings;
        Columns = spec.IsRegression
            ? [new AddedColumn(spec.Score, NumberDataViewType.Single)]
            :
            [
                new AddedColumn(spec.Score, new VectorDataViewType(NumberDataViewType.Single, model.Labels!.Count), model.Labels.ScoreAnnotations()),
                new AddedColumn(spec.PredictedLabel, new KeyDataViewType(typeof(uint), model.Labels.Count), model.Labels.KeyAnnotations()),
            ];
        InputColumnNames = TextClassificationColumns.TextColumns(spec.Sentence1, spec.Sentence2);
    }

    public IReadOnlyList<AddedColumn> Columns { get; }

    public IReadOnlyList<string> InputColumnNames { get; }

    public int BatchSize => _model.Record.BatchSize;

    public Func<object> CreateInputReader(DataViewRow row)
    {
        var first = row.GetGetter<ReadOnlyMemory<char>>(row.Schema[_model.Settings.Sentence1]);
        var second = _model.Settings.Sentence2 is { } s2 ? row.GetGetter<ReadOnlyMemory<char>>(row.Schema[s2]) : null;
        return () =>
        {
            ReadOnlyMemory<char> a = default, b = default;
            first(ref a);
            second?.Invoke(ref b);
            return (a.ToString(), second is null ? null : b.ToString());
        };
    }

    public object[][] Score(IReadOnlyList<object> inputs)
    {
        var spec = _model.Settings;
        int[][] sequences = inputs.Cast<(string First, string? Second)>()
            .Select(p => _model.Tokenizer.Encode(p.First, p.Second, _model.Record.MaxSequenceLength)).ToArray();
        float[][] outputs = _model.Predict(sequences);
        return outputs.Select(o => spec.IsRegression
            ? new object[] { o[0] }
            : new object[] { o, (uint)(Array.IndexOf(o, o.Max()) + 1) }).ToArray();
    }
}
