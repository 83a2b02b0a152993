namespace Microsoft.ML.Bone;

/// <summary>Which parameters fine-tuning trains.</summary>
public enum AdapterKind
{
    /// <summary>Bone: one shared (r, out) block per layer (PEFT MISS, formerly BONE). Default.</summary>
    Bone,
    /// <summary>Bat: Bone with the weight guide, ΔW_ij = W_ij·B_i + B_i (PEFT MISS / BONE, init_weights "bat").</summary>
    Bat,
    /// <summary>
    /// MiSS-mini: an (r, mini_r) block repeated along the output, r·mini_r trainable parameters per layer (PEFT MISS,
    /// init_weights "mini"). Set the width with <see cref="FineTuningOptions.MiniR"/>.
    /// </summary>
    MissMini,
    /// <summary>LoRA: scale·B·A with A Kaiming, B zero.</summary>
    Lora,
    /// <summary>LoRA initialised from the top-r singular vectors of W (PiSSA).</summary>
    PiSSA,
    /// <summary>LoRA initialised from the QR decomposition of W (OLoRA).</summary>
    OLoRA,
    /// <summary>No adapter: every parameter trains (the full fine-tuning baseline).</summary>
    FullFineTuning,
    /// <summary>
    /// RWKV-PEFT's state tuning (RWKV-6 only): no layer is adapted; the initial WKV state of every layer and head
    /// trains, and every sequence starts from it.
    /// </summary>
    StateTuning,
}
