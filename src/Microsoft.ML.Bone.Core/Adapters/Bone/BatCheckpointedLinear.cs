using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Adapters.Bone;

/// <summary>
/// y = x·(W + ΔW(W, B))ᵀ + b with W' rebuilt in the backward pass, so no layer keeps its [out, in] merged weight
/// (nor the intermediates of ΔW) alive between forward and backward. Arguments: x, W (frozen), B, bias (or null),
/// <see cref="BatGrouping"/>, <see cref="BatProduct"/>.
/// </summary>
internal sealed class BatCheckpointedLinear : autograd.SingleTensorFunction<BatCheckpointedLinear>
{
    public override string Name => nameof(BatCheckpointedLinear);

    public override Tensor forward(autograd.AutogradContext ctx, params object?[] vars)
    {
        var (x, w, blocks, bias) = ((Tensor)vars[0]!, (Tensor)vars[1]!, (Tensor)vars[2]!, vars[3] as Tensor);
        ctx.save_for_backward([x, w, blocks]);
        ctx.save_data("grouping", vars[4]!);
        ctx.save_data("product", vars[5]!);
        ctx.save_data("hasBias", bias is not null);
        // Every intermediate of W' (its handles included) is freed here, not when the caller's scope ends: otherwise each
        // layer's [out, in] W' would stay alive until the end of the step, which is what checkpointing is to avoid.
        using var scope = NewDisposeScope();
        Tensor merged = BatMath.MergedWeight(w, blocks, (BatGrouping)vars[4]!, (BatProduct)vars[5]!);
        return nn.functional.linear(x, merged, bias).MoveToOuterDisposeScope();
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
    {
        Nn.BackwardOutputs.ReleasePrevious();
        // The incoming gradient's handle and the saved tensors' handles belong to this call: in the caller's scope they
        // would keep every layer's input and output gradient alive until the end of the step.
        using var scope = NewDisposeScope();
        scope.Attach(gradOutput);
        List<Tensor> saved = ctx.get_saved_variables();
        var (x, w, blocks) = (saved[0], saved[1], saved[2]);
        var grouping = (BatGrouping)ctx.get_data("grouping");
        var product = (BatProduct)ctx.get_data("product");
        long outFeatures = w.shape[0], inFeatures = w.shape[1];

        Tensor g2 = gradOutput.reshape(-1, outFeatures);
        Tensor gradBlocks;
        // dL/dW' = Σ_tokens gᵀ·x, then through W' = W + ΔW(W, B) to dL/dB.
        using (Tensor gradMerged = g2.t().matmul(x.reshape(-1, inFeatures)))
        {
            if (grouping == BatGrouping.OutputBlock && product == BatProduct.Matrix)
                gradBlocks = BatMath.MergedWeightGradient(w, gradMerged, blocks.shape[^1]);
            else
                using (enable_grad())
                {
                    using Tensor leaf = blocks.detach().requires_grad_(true);
                    using Tensor rebuilt = BatMath.MergedWeight(w, leaf, grouping, product);
                    gradBlocks = autograd.grad([rebuilt], [leaf], [gradMerged])[0];
                }
        }
        Tensor gradInput;
        using (Tensor merged = BatMath.MergedWeight(w, blocks, grouping, product)) gradInput = gradOutput.matmul(merged);
        Tensor? gradBias = (bool)ctx.get_data("hasBias") ? g2.sum(dim: 0) : null;
        return Nn.BackwardOutputs.HandOver([gradInput.MoveToOuterDisposeScope(), null!, gradBlocks.MoveToOuterDisposeScope(), gradBias?.MoveToOuterDisposeScope()!, null!, null!]);
    }
}
