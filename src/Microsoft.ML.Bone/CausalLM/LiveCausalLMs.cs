namespace Microsoft.ML.Bone;

/// <summary>
/// Lets scored data lead back to the model that generated it. The completion column carries an annotation with the
/// model's id; annotations travel with a column through later pipeline steps (<c>CopyColumns</c>, selections), so
/// <c>EvaluateCausalLM(scored)</c> finds the model wherever the column ended up. Models are held weakly.
/// </summary>
internal static class LiveCausalLMs
{
    /// <summary>The annotation kind on a completion column.</summary>
    public const string AnnotationKind = "Bone.CausalLM";

    private static readonly Lock Gate = new();
    private static readonly Dictionary<string, WeakReference<CausalLMModel>> Models = [];

    /// <summary>The id under which <paramref name="model"/> can be found while it is alive.</summary>
    public static string Register(CausalLMModel model)
    {
        string id = Guid.NewGuid().ToString("N");
        lock (Gate)
        {
            foreach (string dead in Models.Where(p => !p.Value.TryGetTarget(out _)).Select(p => p.Key).ToList()) Models.Remove(dead);
            Models[id] = new WeakReference<CausalLMModel>(model);
        }
        return id;
    }

    /// <summary>The models whose completion columns appear in <paramref name="schema"/>.</summary>
    public static List<(CausalLMModel Model, string Column)> In(DataViewSchema schema)
    {
        var found = new List<(CausalLMModel, string)>();
        foreach (var column in schema)
        {
            if (column.IsHidden || column.Annotations.Schema.GetColumnOrNull(AnnotationKind) is null) continue;
            ReadOnlyMemory<char> id = default;
            column.Annotations.GetValue(AnnotationKind, ref id);
            lock (Gate)
                if (Models.TryGetValue(id.ToString(), out var reference) && reference.TryGetTarget(out CausalLMModel? model)) found.Add((model, column.Name));
        }
        return found;
    }
}
