using Microsoft.ML.Bone;

namespace Microsoft.ML;

/// <summary>Adds <c>mlContext.Bone</c>.</summary>
public static class BoneMLContextExtensions
{
    extension(MLContext mlContext)
    {
        /// <summary>Bone / Bat / LoRA fine-tuning of transformer models: trainers, GLUE metrics and model loading.</summary>
        public BoneCatalog Bone => BoneCatalog.For(mlContext);
    }
}
