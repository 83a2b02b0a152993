using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Nn;

/// <summary>
/// Per-layer gradient checkpointing (transformers' <c>gradient_checkpointing_enable</c>): the block's forward pass
/// runs without keeping its intermediates; only its input is kept, and the backward pass recomputes the block
/// (replaying the same dropout masks) to get the gradients of its input and of its trainable parameters. The
/// gradients are those of the plain forward pass; memory drops from all intermediates of every layer to one input
/// per layer plus one layer's intermediates.
/// </summary>
public static class GradientCheckpoint
{
    /// <summary>
    /// <paramref name="forward"/>(<paramref name="hidden"/>) for the block <paramref name="block"/>, checkpointed when
    /// gradients are being recorded; other tensors the block reads (masks, rotary tables) must not need gradients.
    /// </summary>
    public static Tensor Run(nn.Module block, Tensor hidden, Func<Tensor, Tensor> forward)
    {
        if (!is_grad_enabled()) return forward(hidden);
        Parameter[] trainable = block.parameters().Where(p => p.requires_grad).ToArray();
        if (trainable.Length == 0 && !hidden.requires_grad) return forward(hidden);
        return CheckpointFunction.apply([hidden, new Recompute(block, forward, trainable), .. trainable]);
    }

    private sealed class Recompute(nn.Module block, Func<Tensor, Tensor> forward, Parameter[] trainable)
    {
        public Parameter[] Trainable => trainable;

        public Tensor Forward(Tensor x) => forward(x);

        // The random streams the block's dropout layers use, and torch's global one for layers without a stream.
        public List<(RandomSource? Source, Tensor? State)> SaveRandomState()
        {
            var dropouts = block.modules().OfType<Dropout>().Where(d => d.training && d.P > 0).ToList();
            var states = dropouts.Select(d => d.Random).Where(r => r is not null).Distinct().Select(r => (r, r!.GetState())).ToList();
            if (dropouts.Any(d => d.Random is null)) states.Add((null, get_rng_state()));
            return states!;
        }

        public static void RestoreRandomState(List<(RandomSource? Source, Tensor? State)> states)
        {
            foreach (var (source, state) in states)
                if (source is null) set_rng_state(state!);
                else source.SetState(state);
        }
    }

    // Arguments: hidden, Recompute, then the block's trainable parameters (so their gradients flow through here).
    private sealed class CheckpointFunction : autograd.SingleTensorFunction<CheckpointFunction>
    {
        public override string Name => "GradientCheckpoint";

        public override Tensor forward(autograd.AutogradContext ctx, params object?[] vars)
        {
            var x = (Tensor)vars[0]!;
            var recompute = (Recompute)vars[1]!;
            ctx.save_for_backward([x]);
            ctx.save_data("recompute", recompute);
            ctx.save_data("random", recompute.SaveRandomState());
            ctx.save_data("inputNeedsGrad", x.requires_grad);
            // Without a graph nothing needs the block's intermediates: release them now, not when the step's scope ends.
            return Scoped.Run(() => recompute.Forward(x));
        }

        public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor gradOutput)
        {
            BackwardOutputs.ReleasePrevious();
            var recompute = (Recompute)ctx.get_data("recompute");
            var random = (List<(RandomSource? Source, Tensor? State)>)ctx.get_data("random");
            bool inputNeedsGrad = (bool)ctx.get_data("inputNeedsGrad");
            Parameter[] trainable = recompute.Trainable;

            var now = recompute.SaveRandomState();
            Recompute.RestoreRandomState(random);
            IList<Tensor> grads;
            using (var scope = NewDisposeScope())
            using (enable_grad())
            {
                // The incoming gradient's and the saved input's handles belong to this call, not to the step's scope
                // (where they would keep every layer's hidden state and its gradient alive until the step ends).
                scope.Attach(gradOutput);
                Tensor x = ctx.get_saved_variables()[0];
                Tensor input = x.detach().requires_grad_(inputNeedsGrad);
                Tensor output = recompute.Forward(input);
                List<Tensor> inputs = inputNeedsGrad ? [input, .. trainable] : [.. trainable];
                grads = autograd.grad([output], inputs, [gradOutput], allow_unused: true);
                foreach (Tensor g in grads) g?.MoveToOuterDisposeScope();
            }
            Recompute.RestoreRandomState(now);
            var result = new List<Tensor> { inputNeedsGrad ? grads[0] : null!, null! };
            result.AddRange(grads.Skip(inputNeedsGrad ? 1 : 0));
            return BackwardOutputs.HandOver(result);
        }
    }
}
