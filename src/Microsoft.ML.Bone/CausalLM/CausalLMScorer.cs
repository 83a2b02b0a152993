using Microsoft.ML.Bone.Data;

namespace Microsoft.ML.Bone;

/// <summary>Generates the completion column for batches of prompts.</summary>
internal sealed class CausalLMScorer(CausalLMModel model, Action<int, string>? onToken) : IRowScorer
{
    public CausalLMModel Model => model;

    public IReadOnlyList<AddedColumn> Columns { get; } = [new AddedColumn(model.Settings.Completion, TextDataViewType.Instance, ModelAnnotation(model))];

    // Points EvaluateCausalLM from the scored data back to this model (see LiveCausalLMs).
    private static DataViewSchema.Annotations ModelAnnotation(CausalLMModel model)
    {
        string id = LiveCausalLMs.Register(model);
        var builder = new DataViewSchema.Annotations.Builder();
        builder.Add(LiveCausalLMs.AnnotationKind, TextDataViewType.Instance, (ref ReadOnlyMemory<char> v) => v = id.AsMemory());
        return builder.ToAnnotations();
    }

    public IReadOnlyList<string> InputColumnNames { get; } = [model.Settings.Prompt];

    public int BatchSize => model.Record.BatchSize;

    public Func<object> CreateInputReader(DataViewRow row)
    {
        var prompt = row.GetGetter<ReadOnlyMemory<char>>(row.Schema[model.Settings.Prompt]);
        return () =>
        {
            ReadOnlyMemory<char> text = default;
            prompt(ref text);
            return text.ToString();
        };
    }

    public object[][] Score(IReadOnlyList<object> inputs) =>
        model.Complete(inputs.Cast<string>().ToArray(), onToken).Select(c => new object[] { c }).ToArray();
}
