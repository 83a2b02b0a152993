#!/usr/bin/python3
"""Writes the .pth fixtures of PthFileTests with torch.save, and pth_fixtures.json describing them.

Run with Debian's PyTorch (apt-get install python3-torch python3-numpy):

    /usr/bin/python3 test/Microsoft.ML.Bone.Tests/IO/PthFixtures/make_pth_fixtures.py

The manifest records, per file and in state-dict order, each tensor's dtype, shape, strides, storage offset and
values (C order, exact: every float is a multiple of 1/16 below 4 in magnitude, so bf16, f16 and f32 hold it
exactly), as torch itself sees them after saving, so the C# reader is checked against torch rather than against
itself.
"""

import collections
import json
import math
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def values(shape, seed, dtype):
    """Deterministic values: k/16 with k in [-50, 50] for floats, large signed values for int64, a pattern for bool."""
    n = math.prod(shape)
    i = torch.arange(n, dtype=torch.int64)
    k = (i * 37 + seed * 11) % 101
    if dtype == torch.bool:
        v = k % 3 == 0
    elif dtype == torch.int64:
        v = (k - 50) * 3_000_000_019
    elif dtype in (torch.int32, torch.int16, torch.int8):
        v = (k - 50).to(dtype)
    elif dtype == torch.uint8:
        v = k.to(dtype)
    else:
        v = (k - 50).to(torch.float64) / 16
    return v.reshape(shape).to(dtype)


def rwkv6_state_dict(dtype, ordered):
    """The key layout of a BlinkDL RWKV-6 ("x060") checkpoint, with one block and tiny sizes."""
    C, V, H, N, F, D_MIX, D_DECAY = 4, 8, 1, 4, 14, 2, 2
    shapes = [
        ("emb.weight", [V, C]),
        ("blocks.0.ln0.weight", [C]),
        ("blocks.0.ln0.bias", [C]),
        ("blocks.0.ln1.weight", [C]),
        ("blocks.0.ln1.bias", [C]),
        ("blocks.0.ln2.weight", [C]),
        ("blocks.0.ln2.bias", [C]),
        ("blocks.0.att.time_maa_x", [1, 1, C]),
        ("blocks.0.att.time_maa_w", [1, 1, C]),
        ("blocks.0.att.time_maa_k", [1, 1, C]),
        ("blocks.0.att.time_maa_v", [1, 1, C]),
        ("blocks.0.att.time_maa_r", [1, 1, C]),
        ("blocks.0.att.time_maa_g", [1, 1, C]),
        ("blocks.0.att.time_maa_w1", [C, D_MIX * 5]),
        ("blocks.0.att.time_maa_w2", [5, D_MIX, C]),
        ("blocks.0.att.time_decay", [1, 1, C]),
        ("blocks.0.att.time_decay_w1", [C, D_DECAY]),
        ("blocks.0.att.time_decay_w2", [D_DECAY, C]),
        ("blocks.0.att.time_faaaa", [H, N]),
        ("blocks.0.att.receptance.weight", [C, C]),
        ("blocks.0.att.key.weight", [C, C]),
        ("blocks.0.att.value.weight", [C, C]),
        ("blocks.0.att.output.weight", [C, C]),
        ("blocks.0.att.gate.weight", [C, C]),
        ("blocks.0.att.ln_x.weight", [C]),
        ("blocks.0.att.ln_x.bias", [C]),
        ("blocks.0.ffn.time_maa_k", [1, 1, C]),
        ("blocks.0.ffn.time_maa_r", [1, 1, C]),
        ("blocks.0.ffn.key.weight", [F, C]),
        ("blocks.0.ffn.receptance.weight", [C, C]),
        ("blocks.0.ffn.value.weight", [C, F]),
        ("ln_out.weight", [C]),
        ("ln_out.bias", [C]),
        ("head.weight", [V, C]),
    ]
    sd = collections.OrderedDict() if ordered else {}
    for seed, (name, shape) in enumerate(shapes):
        sd[name] = values(shape, seed, dtype)
    if ordered:
        # What nn.Module.state_dict() attaches; pickled through BUILD.
        sd._metadata = collections.OrderedDict([("", {"version": 1}), ("blocks.0", {"version": 1})])
    return sd


def views_state_dict():
    """Strided views, shared storages, other dtypes, 0-dim and empty tensors, and a Parameter, in a plain dict."""
    base = values([3, 4], 1, torch.float32)
    shared = values([5, 2], 2, torch.float32)
    return {
        "transposed": base.t(),                      # strides (1, 4)
        "every_other_column": base[:, ::2],          # strides (4, 2)
        "shared.head": shared[0],                    # offset 0 in shared storage
        "shared.tail": shared[2:],                   # offset 4 in the same storage
        "shared.column": shared[1:, 1],              # offset 3, stride 2
        "expanded": values([1, 3], 3, torch.float16).expand(2, 3),  # stride 0
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 3),
        "i64": values([5], 4, torch.int64),
        "i32": values([2, 2], 5, torch.int32),
        "i16": values([3], 6, torch.int16),
        "i8": values([3], 7, torch.int8),
        "u8": values([3], 8, torch.uint8),
        "bool": values([2, 3], 9, torch.bool),
        "f64": values([2], 10, torch.float64),
        "f16": values([2, 2], 11, torch.float16),
        "parameter": torch.nn.Parameter(values([2, 2], 12, torch.float32)),
    }


def protocol4_state_dict():
    base = values([2, 3], 13, torch.bfloat16)
    return collections.OrderedDict([("w", base), ("w.t", base.t()), ("b", values([3], 14, torch.float32))])


def describe(sd):
    out = []
    for name, t in sd.items():
        out.append({
            "name": name,
            "dtype": str(t.dtype).removeprefix("torch."),
            "shape": list(t.shape),
            "stride": list(t.stride()),
            "offset": t.storage_offset(),
            "values": t.detach().contiguous().flatten().tolist(),
        })
    return out


def main():
    files = {
        "rwkv6_bf16.pth": (rwkv6_state_dict(torch.bfloat16, ordered=True), {}),
        "rwkv6_f16.pth": (rwkv6_state_dict(torch.float16, ordered=False), {}),
        "rwkv6_f32.pth": (rwkv6_state_dict(torch.float32, ordered=True), {}),
        "views.pth": (views_state_dict(), {}),
        "protocol4.pth": (protocol4_state_dict(), {"pickle_protocol": 4}),
    }
    manifest = {}
    for file, (sd, options) in files.items():
        path = os.path.join(HERE, file)
        torch.save(sd, path, **options)
        loaded = torch.load(path)
        assert list(loaded.keys()) == list(sd.keys()), file
        for name in sd:
            assert torch.equal(loaded[name], sd[name]), (file, name)
        manifest[file] = {"torch": torch.__version__, "pickle_protocol": options.get("pickle_protocol", 2), "tensors": describe(loaded)}
    # One line per tensor keeps the manifest small and its diffs readable.
    lines = ["{"]
    for i, (file, entry) in enumerate(manifest.items()):
        lines.append(f' "{file}": {{"torch": {json.dumps(entry["torch"])}, "pickle_protocol": {entry["pickle_protocol"]}, "tensors": [')
        lines.append(",\n".join("  " + json.dumps(t) for t in entry["tensors"]))
        lines.append(" ]}" + ("," if i < len(manifest) - 1 else ""))
    lines.append("}")
    with open(os.path.join(HERE, "pth_fixtures.json"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
