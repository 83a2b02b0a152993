"""The PyTorch eager peer of `bone bench`: the same layers, models, adapters and training step, so every row of the
table can say ours / PyTorch. Run by `bone bench` as `python3 bench_peer.py '<case json>'`; prints one JSON line.

Adapters follow Hugging Face PEFT's formulas (Bone/MiSS: result + ChunkSum(x) @ block; Bat: W + W_blk @ B + B through
permutes; LoRA: result + B(A(x)) * scale). Models are written the way transformers writes them in eager mode
(LLaMA: RMSNorm, rotate-half RoPE, softmax attention, SwiGLU; RoBERTa: post-LN encoder; RWKV-6: x060 with the same
chunked WKV). Nothing here is imported by the tests.
"""
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint


def rss():
    peak = current = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) * 1024
    return peak, current


class Adapted(nn.Module):
    """nn.Linear (frozen) with one PEFT-style adapter."""

    def __init__(self, inf, outf, method, r):
        super().__init__()
        self.base = nn.Linear(inf, outf, bias=False)
        self.base.weight.requires_grad_(False)
        self.method, self.inf, self.outf = method, inf, outf
        if method in ("lora", "pissa"):
            self.lora_A = nn.Linear(inf, r, bias=False)
            self.lora_B = nn.Linear(r, outf, bias=False)
            nn.init.zeros_(self.lora_B.weight)
            self.scale = 2.0
        elif method == "bone":
            self.block = nn.Parameter(torch.zeros(2 * r, outf))
        elif method == "mini":
            self.block = nn.Parameter(torch.zeros(2 * r, 2 * r))
        elif method in ("bat", "bat_ckpt"):
            self.b = 2 * r
            self.block = nn.Parameter(torch.zeros(outf // self.b, self.b, self.b))

    def bat_merged(self, weight, block):
        r = self.b
        w = weight.reshape(weight.size(0) // r, r, weight.size(1) // r, r).permute(2, 0, 1, 3)
        delta = (w @ block + block).permute(1, 2, 0, 3).reshape(*weight.shape)
        return weight + delta

    def forward(self, x):
        m = self.method
        if m in ("base", "full"):
            return self.base(x)
        if m in ("lora", "pissa"):
            return self.base(x) + self.lora_B(self.lora_A(x)) * self.scale
        if m in ("bone", "mini"):
            block = self.block if m == "bone" else self.block.repeat(1, self.outf // self.block.size(1))
            r = block.size(0)
            return self.base(x) + torch.sum(x.reshape(*x.shape[:-1], x.size(-1) // r, r), dim=-2) @ block
        if m == "bat":
            return F.linear(x, self.bat_merged(self.base.weight, self.block))
        # bat_ckpt: the merged weight and the product recomputed in backward
        return torch.utils.checkpoint.checkpoint(lambda xx, bb: F.linear(xx, self.bat_merged(self.base.weight, bb)), x, self.block, use_reentrant=False)


def train_adapters_only(model, also=()):
    """Freezes every parameter of model except the adapters' own (and those in also, e.g. a new head)."""
    for p in model.parameters():
        p.requires_grad_(False)
    for m in model.modules():
        if isinstance(m, Adapted):
            for n, p in m.named_parameters():
                if not n.startswith("base."):
                    p.requires_grad_(True)
    for p in also:
        p.requires_grad_(True)


def linear_layer(inf, outf, method, r, targets, name):
    if method in ("base", "full") or not any(name.endswith(t) for t in targets):
        layer = Adapted(inf, outf, "base", r)
        if method == "full":
            layer.base.weight.requires_grad_(True)
        return layer
    return Adapted(inf, outf, method, r)


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-6):
        super().__init__()
        self.weight, self.eps = nn.Parameter(torch.ones(d)), eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class LlamaLayer(nn.Module):
    def __init__(self, c, method, r):
        super().__init__()
        d, heads, kv, hd, inter = c["hidden"], c["heads"], c["kv"], c["head_dim"], c["inter"]
        t = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
        self.heads, self.kv, self.hd = heads, kv, hd
        self.q = linear_layer(d, heads * hd, method, r, t, "q_proj")
        self.k = linear_layer(d, kv * hd, method, r, t, "k_proj")
        self.v = linear_layer(d, kv * hd, method, r, t, "v_proj")
        self.o = linear_layer(heads * hd, d, method, r, t, "o_proj")
        self.gate = linear_layer(d, inter, method, r, t, "gate_proj")
        self.up = linear_layer(d, inter, method, r, t, "up_proj")
        self.down = linear_layer(inter, d, method, r, t, "down_proj")
        self.n1, self.n2 = RMSNorm(d), RMSNorm(d)

    def forward(self, x, cos, sin, mask, cache=None):
        b, t, _ = x.shape
        h = self.n1(x)
        q = self.q(h).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = self.k(h).view(b, t, self.kv, self.hd).transpose(1, 2)
        v = self.v(h).view(b, t, self.kv, self.hd).transpose(1, 2)
        q, k = q * cos + rotate_half(q) * sin, k * cos + rotate_half(k) * sin
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
            cache["k"], cache["v"] = k, v
        rep = self.heads // self.kv
        k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.hd)
        if mask is not None:
            scores = scores + mask
        a = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, -1)
        x = x + self.o(a)
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self, c, method, r):
        super().__init__()
        self.c = c
        self.embed = nn.Embedding(c["vocab"], c["hidden"])
        self.layers = nn.ModuleList([LlamaLayer(c, method, r) for _ in range(c["layers"])])
        self.norm = RMSNorm(c["hidden"])
        self.head = nn.Linear(c["hidden"], c["vocab"], bias=False)
        inv = 1.0 / (10000 ** (torch.arange(0, c["head_dim"], 2).float() / c["head_dim"]))
        self.register_buffer("inv", inv)
        if method != "full":
            for p in list(self.embed.parameters()) + list(self.head.parameters()) + [p for n in (l.n1 for l in self.layers) for p in n.parameters()] + [p for n in (l.n2 for l in self.layers) for p in n.parameters()] + list(self.norm.parameters()):
                p.requires_grad_(False)

    def forward(self, ids, caches=None, past=0):
        t = ids.size(1)
        pos = torch.arange(past, past + t).float()
        freqs = torch.outer(pos, self.inv)
        emb = torch.cat([freqs, freqs], -1)
        cos, sin = emb.cos()[None, None], emb.sin()[None, None]
        mask = None
        if t > 1:
            mask = torch.full((t, past + t), float("-inf")).triu(past + 1)[None, None]
        x = self.embed(ids)
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, mask, None if caches is None else caches[i])
        return self.head(self.norm(x))


class RobertaLayer(nn.Module):
    def __init__(self, d, heads, inter, method, r):
        super().__init__()
        t = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")
        self.heads = heads
        self.q = linear_layer(d, d, method, r, t, "query")
        self.k = linear_layer(d, d, method, r, t, "key")
        self.v = linear_layer(d, d, method, r, t, "value")
        self.ao = linear_layer(d, d, method, r, t, "attention.output.dense")
        self.i = linear_layer(d, inter, method, r, t, "intermediate.dense")
        self.o = linear_layer(inter, d, method, r, t, "output.dense")
        self.ln1, self.ln2 = nn.LayerNorm(d, eps=1e-5), nn.LayerNorm(d, eps=1e-5)
        self.bias = nn.ParameterList([nn.Parameter(torch.zeros(n)) for n in (d, d, d, d, inter, d)])

    def forward(self, x):
        b, t, d = x.shape
        hd = d // self.heads
        q = (self.q(x) + self.bias[0]).view(b, t, self.heads, hd).transpose(1, 2)
        k = (self.k(x) + self.bias[1]).view(b, t, self.heads, hd).transpose(1, 2)
        v = (self.v(x) + self.bias[2]).view(b, t, self.heads, hd).transpose(1, 2)
        a = ((q @ k.transpose(-1, -2) / math.sqrt(hd)).softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = self.ln1(self.ao(a) + self.bias[3] + x)
        return self.ln2(self.o(F.gelu(self.i(x) + self.bias[4])) + self.bias[5] + x)


class Roberta(nn.Module):
    def __init__(self, c, method, r):
        super().__init__()
        d = c["hidden"]
        self.word, self.pos = nn.Embedding(50265, d), nn.Embedding(514, d)
        self.ln = nn.LayerNorm(d, eps=1e-5)
        self.layers = nn.ModuleList([RobertaLayer(d, c["heads"], c["inter"], method, r) for _ in range(c["layers"])])
        self.dense, self.out = nn.Linear(d, d), nn.Linear(d, 2)
        if method != "full":
            train_adapters_only(self, list(self.dense.parameters()) + list(self.out.parameters()))

    def forward(self, ids):
        positions = torch.arange(2, 2 + ids.size(1))[None]
        x = self.ln(self.word(ids) + self.pos(positions))
        for layer in self.layers:
            x = layer(x)
        return self.out(torch.tanh(self.dense(x[:, 0])))


def wkv_chunked(r, k, v, logw, u, s, L=16):
    b, t, h, n = r.shape
    chunks = (t + L - 1) // L
    pad = chunks * L - t

    def blocks(x):
        x = x.permute(0, 2, 1, 3)
        if pad:
            x = F.pad(x, (0, 0, 0, pad))
        return x.reshape(b, h, chunks, L, n)

    rb, kb, vb, wb = blocks(r), blocks(k), blocks(v), blocks(logw)
    c = wb.cumsum(3)
    before = c - wb
    lower = torch.ones(L, L, dtype=torch.bool).tril(-1)[..., None]
    e = (before.unsqueeze(4) - c.unsqueeze(3)).masked_fill(~lower, float("-inf")).exp()
    scores = (rb.unsqueeze(4) * kb.unsqueeze(3) * e).sum(-1)
    bonus = (rb * u.view(1, h, 1, 1, n) * kb).sum(-1)
    y = (scores + torch.diag_embed(bonus)) @ vb
    last = c[:, :, :, -1:]
    contribution = (kb * (last - c).exp()).transpose(3, 4) @ vb
    decay = last.squeeze(3).exp().unsqueeze(-1)
    starts = []
    for i in range(chunks):
        starts.append(s)
        s = decay[:, :, i] * s + contribution[:, :, i]
    y = y + (rb * before.exp()) @ torch.stack(starts, 2)
    return y.reshape(b, h, chunks * L, n)[:, :, :t].permute(0, 2, 1, 3), s


class RwkvBlock(nn.Module):
    def __init__(self, c, method, r, first):
        super().__init__()
        d, f, dm, dd = c["hidden"], c["ffn"], c["mix"], c["decay"]
        self.h, self.n, self.dm = d // 64, 64, dm
        t = ("attention.receptance", "attention.key", "attention.value", "attention.gate", "attention.output", "feed_forward.key", "feed_forward.receptance", "feed_forward.value")
        P = lambda *s: nn.Parameter(torch.rand(*s) * 0.1)
        self.maa = nn.ParameterList([P(1, 1, d) for _ in range(6)])
        self.w1, self.w2 = P(d, 5 * dm), P(5, dm, d)
        self.decay, self.dw1, self.dw2 = P(1, 1, d), P(d, dd), P(dd, d)
        self.u = P(self.h, self.n)
        self.r = linear_layer(d, d, method, r, t, "attention.receptance")
        self.k = linear_layer(d, d, method, r, t, "attention.key")
        self.v = linear_layer(d, d, method, r, t, "attention.value")
        self.g = linear_layer(d, d, method, r, t, "attention.gate")
        self.o = linear_layer(d, d, method, r, t, "attention.output")
        self.fk = linear_layer(d, f, method, r, t, "feed_forward.key")
        self.fr = linear_layer(d, d, method, r, t, "feed_forward.receptance")
        self.fv = linear_layer(f, d, method, r, t, "feed_forward.value")
        self.fmaa = nn.ParameterList([P(1, 1, d), P(1, 1, d)])
        self.ln0 = nn.LayerNorm(d) if first else None
        self.ln1, self.ln2, self.lnx = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, x):
        if self.ln0 is not None:
            x = self.ln0(x)
        b, t, d = x.shape
        xx = self.ln1(x)
        sx = F.pad(xx, (0, 0, 1, -1)) - xx
        m = torch.tanh((xx + sx * self.maa[0]) @ self.w1).view(b * t, 5, self.dm).transpose(0, 1)
        m = torch.bmm(m, self.w2).view(5, b, t, d)
        xw, xk, xv, xr, xg = [xx + sx * (self.maa[i + 1] + m[i]) for i in range(5)]
        r, k, v, g = self.r(xr), self.k(xk), self.v(xv), F.silu(self.g(xg))
        logw = -torch.exp(self.decay + torch.tanh(xw @ self.dw1) @ self.dw2)
        y, _ = wkv_chunked(*(z.view(b, t, self.h, self.n) for z in (r, k, v, logw)), self.u, torch.zeros(b, self.h, self.n, self.n))
        y = F.layer_norm(y, (self.n,), eps=64e-5).reshape(b, t, d) * self.lnx.weight + self.lnx.bias
        x = x + self.o(y * g)
        xx = self.ln2(x)
        sx = F.pad(xx, (0, 0, 1, -1)) - xx
        kk = torch.relu(self.fk(xx + sx * self.fmaa[0])).square()
        return x + torch.sigmoid(self.fr(xx + sx * self.fmaa[1])) * self.fv(kk)


def rwkv_step(block, x, st):
    """One token through a block with its recurrent state (att shift, wkv [b, h, n, n], ffn shift)."""
    if block.ln0 is not None:
        x = block.ln0(x)
    b, d = x.shape
    xx = block.ln1(x)
    sx = st[0] - xx
    st[0] = xx
    m = torch.tanh((xx + sx * block.maa[0][0]) @ block.w1).view(b, 5, block.dm).transpose(0, 1)
    m = torch.bmm(m, block.w2)
    xw, xk, xv, xr, xg = [xx + sx * (block.maa[i + 1][0] + m[i]) for i in range(5)]
    r, k, v = (z.view(b, block.h, block.n) for z in (block.r(xr), block.k(xk), block.v(xv)))
    g = F.silu(block.g(xg))
    w = torch.exp(-torch.exp(block.decay[0] + torch.tanh(xw @ block.dw1) @ block.dw2)).view(b, block.h, block.n)
    kv = k.unsqueeze(-1) * v.unsqueeze(-2)
    y = (r.unsqueeze(-2) @ (st[1] + block.u.unsqueeze(-1) * kv)).squeeze(-2)
    st[1] = w.unsqueeze(-1) * st[1] + kv
    y = F.layer_norm(y, (block.n,), eps=64e-5).reshape(b, d) * block.lnx.weight + block.lnx.bias
    x = x + block.o(y * g)
    xx = block.ln2(x)
    sx = st[2] - xx
    st[2] = xx
    kk = torch.relu(block.fk(xx + sx * block.fmaa[0][0])).square()
    return x + torch.sigmoid(block.fr(xx + sx * block.fmaa[1][0])) * block.fv(kk)


class Rwkv(nn.Module):
    def __init__(self, c, method, r):
        super().__init__()
        self.emb = nn.Embedding(c["vocab"], c["hidden"])
        self.blocks = nn.ModuleList([RwkvBlock(c, method, r, i == 0) for i in range(c["layers"])])
        self.ln_out, self.head = nn.LayerNorm(c["hidden"]), nn.Linear(c["hidden"], c["vocab"], bias=False)
        if method != "full":
            train_adapters_only(self)

    def forward(self, ids):
        x = self.emb(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_out(x))


MODELS = {
    "llama-512": ("llama", dict(vocab=32000, hidden=512, inter=1408, layers=4, heads=8, kv=8, head_dim=64)),
    "tinyllama": ("llama", dict(vocab=32000, hidden=2048, inter=5632, layers=22, heads=32, kv=4, head_dim=64)),
    "roberta-base": ("roberta", dict(hidden=768, layers=12, heads=12, inter=3072)),
    "roberta-small": ("roberta", dict(hidden=256, layers=4, heads=4, inter=1024)),
    "rwkv6-512": ("rwkv", dict(vocab=65536, hidden=512, layers=4, ffn=1792, mix=32, decay=64)),
    "rwkv6-1024": ("rwkv", dict(vocab=65536, hidden=1024, layers=8, ffn=3584, mix=32, decay=64)),
}


def build(name, method, r):
    kind, c = MODELS[name]
    # PiSSA's step is LoRA's (only its initial values differ), so the peer times it as LoRA.
    model = {"llama": Llama, "roberta": Roberta, "rwkv": Rwkv}[kind](c, "lora" if method == "pissa" else method, r)
    return kind, model


def median(steps, fn):
    fn()
    fn()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def report(seconds, tokens, rest):
    peak, _ = rss()
    return dict(seconds=seconds, tokens_per_s=tokens / seconds, rss_rest=rest, rss_peak=peak, rss_above=peak - rest)


def main(case):
    threads = int(case.get("threads", 0)) or torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    kind, method, r, steps = case["kind"], case.get("method", "base"), int(case.get("r", 8)), int(case.get("steps", 3))
    if kind == "matmul":
        n = int(case.get("n", 2048))
        dtype = torch.bfloat16 if case.get("dtype") == "bfloat16" else torch.float32
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        with torch.no_grad():
            return report(median(steps, lambda: a @ b), n, rss()[1])
    if kind == "linear":
        layer = Adapted(int(case["in"]), int(case["out"]), method, r)
        x = torch.randn(int(case["tokens"]), int(case["in"]), requires_grad=True)
        rest = rss()[1]
        return report(median(steps, lambda: layer(x).sum().backward()), int(case["tokens"]), rest)
    family, model = build(case["model"], method, r)
    if kind == "train":
        batch, seq = int(case.get("batch", 1)), int(case.get("seq", 256))
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5)
        ids = torch.randint(0, 30000, (batch, seq))
        labels = torch.randint(0, 2, (batch,))

        def step():
            opt.zero_grad()
            out = model(ids)
            loss = F.cross_entropy(out, labels) if family == "roberta" else F.cross_entropy(out[:, :-1].reshape(-1, out.size(-1)), ids[:, 1:].reshape(-1))
            loss.backward()
            opt.step()

        rest = rss()[1]
        return report(median(steps, step), batch * seq, rest)
    model.eval()
    if kind == "infer":
        batch, seq = int(case.get("batch", 1)), int(case.get("seq", 256))
        ids = torch.randint(0, 30000, (batch, seq))
        if case.get("state") == "merged" and method in ("bone", "lora"):
            with torch.no_grad():
                for m in model.modules():
                    if isinstance(m, Adapted) and m.method == method:
                        m.method = "base"
        rest = rss()[1]
        with torch.no_grad():
            return report(median(steps, lambda: model(ids)), batch * seq, rest)
    if kind == "generate":
        batch, prompt, tokens = int(case.get("batch", 1)), int(case.get("prompt", 32)), int(case.get("tokens", 64))
        ids = torch.tensor([[(i * 7 + b * 13) % 30000 + 3 for i in range(1, prompt + 1)] for b in range(batch)])

        def generate():
            if family == "llama":
                caches = [dict() for _ in model.layers]
                logits = model(ids, caches, 0)[:, -1]
                past = prompt
                for _ in range(tokens):
                    nxt = logits.argmax(-1, keepdim=True)
                    logits = model(nxt, caches, past)[:, -1]
                    past += 1
            else:
                # RWKV: the prompt token by token through the recurrence (as ChatRWKV's RNN mode), then each new token.
                d = model.emb.weight.size(1)
                states = [[torch.zeros(batch, d), torch.zeros(batch, d // 64, 64, 64), torch.zeros(batch, d)] for _ in model.blocks]

                def one(tok):
                    x = model.emb(tok)
                    for block, st in zip(model.blocks, states):
                        x = rwkv_step(block, x, st)
                    return model.head(model.ln_out(x))

                for i in range(prompt):
                    logits = one(ids[:, i])
                for _ in range(tokens):
                    logits = one(logits.argmax(-1))

        rest = rss()[1]
        with torch.no_grad():
            return report(median(steps, generate), batch * tokens, rest)
    raise ValueError(f"unknown kind {kind}")


if __name__ == "__main__":
    result = main(json.loads(sys.argv[1]))
    result["threads"] = torch.get_num_threads()
    result["blas"] = "mkl" if torch.backends.mkl.is_available() else "other"
    print(json.dumps(result))
