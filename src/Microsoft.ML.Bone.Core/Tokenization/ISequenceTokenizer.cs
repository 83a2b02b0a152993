namespace Microsoft.ML.Bone.Tokenization;

/// <summary>Turns one text or a text pair into model token ids.</summary>
public interface ISequenceTokenizer
{
    /// <summary>Id used to pad batches.</summary>
    int PadId { get; }

    /// <summary>Ids of <paramref name="first"/> (and <paramref name="second"/>) with special tokens, at most <paramref name="maxLength"/> long.</summary>
    int[] Encode(string first, string? second, int maxLength);

    /// <summary>As <see cref="Encode"/>, with the length the ids would have had without truncation.</summary>
    (int[] Ids, int FullLength) EncodeCounting(string first, string? second, int maxLength);
}
