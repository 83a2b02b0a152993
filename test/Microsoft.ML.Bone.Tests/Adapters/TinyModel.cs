using Microsoft.ML.Bone.Adapters;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Microsoft.ML.Bone.Tests.Adapters;

/// <summary>
/// A small model with Hugging Face-style module paths (<c>model.layers.N.self_attn.q_proj</c>, <c>classifier.dense</c>)
/// for injection tests. Hidden size 8, MLP size 12, 3 outputs.
/// </summary>
internal sealed class TinyModel : nn.Module<Tensor, Tensor>
{
    public readonly Inner model;
    public readonly Head classifier;

    public TinyModel(int layers = 2) : base(nameof(TinyModel))
    {
        model = new Inner(layers);
        classifier = new Head();
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => classifier.call(model.call(x));

    internal sealed class Inner : nn.Module<Tensor, Tensor>
    {
        public readonly ModuleList<Block> layers;
        public readonly LayerNorm norm;

        public Inner(int count) : base(nameof(Inner))
        {
            layers = new ModuleList<Block>(Enumerable.Range(0, count).Select(_ => new Block()).ToArray());
            norm = nn.LayerNorm(8);
            RegisterComponents();
        }

        public override Tensor forward(Tensor h)
        {
            foreach (var block in layers) h = block.call(h);
            return norm.call(h);
        }
    }

    internal sealed class Block : nn.Module<Tensor, Tensor>
    {
        public readonly Attention self_attn = new();
        public readonly Mlp mlp = new();

        public Block() : base(nameof(Block)) => RegisterComponents();

        public override Tensor forward(Tensor h)
        {
            h = h + self_attn.call(h);
            return h + mlp.call(h);
        }
    }

    internal sealed class Attention : nn.Module<Tensor, Tensor>
    {
        public readonly AdaptableLinear q_proj = new(8, 8);
        public readonly AdaptableLinear v_proj = new(8, 8);

        public Attention() : base(nameof(Attention)) => RegisterComponents();

        public override Tensor forward(Tensor h) => v_proj.call(q_proj.call(h).tanh());
    }

    internal sealed class Mlp : nn.Module<Tensor, Tensor>
    {
        public readonly AdaptableLinear up_proj = new(8, 12);
        public readonly AdaptableLinear down_proj = new(12, 8);

        public Mlp() : base(nameof(Mlp)) => RegisterComponents();

        public override Tensor forward(Tensor h) => down_proj.call(nn.functional.relu(up_proj.call(h)));
    }

    internal sealed class Head : nn.Module<Tensor, Tensor>
    {
        public readonly AdaptableLinear dense = new(8, 8);
        public readonly AdaptableLinear out_proj = new(8, 3);

        public Head() : base(nameof(Head)) => RegisterComponents();

        public override Tensor forward(Tensor h) => out_proj.call(dense.call(h).tanh());
    }
}
