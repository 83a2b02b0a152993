"""Writes tiny-rwkv-6v0-1m as BlinkDL's RWKV-LM saves its checkpoints: torch.save of a plain dict of bf16 tensors
under BlinkDL names and shapes (emb.weight, blocks.N.att.time_maa_x [1, 1, C], ...).

Source: ../shared/data/models/tiny-rwkv-6v0-1m/hf/model.safetensors (F32; every value is exactly representable in
bfloat16, so the bf16 file is lossless). Run with Debian's PyTorch: /usr/bin/python3 make_tiny_pth.py SHARED_DATA OUT.pth
"""
import json
import struct
import sys

import numpy
import torch


def read_safetensors(path):
    with open(path, "rb") as f:
        length = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(length))
        data = f.read()
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        assert entry["dtype"] == "F32", name
        start, end = entry["data_offsets"]
        tensors[name] = torch.from_numpy(numpy.frombuffer(data[start:end], dtype="<f4").copy()).reshape(entry["shape"])
    return tensors


def blink_name(hf):
    if hf == "rwkv.embeddings.weight":
        return "emb.weight"
    if hf == "head.weight":
        return hf
    name = hf[len("rwkv."):].replace(".attention.", ".att.").replace(".feed_forward.", ".ffn.")
    return name.replace("blocks.0.pre_ln.", "blocks.0.ln0.")


def main(shared, out):
    tensors = read_safetensors(f"{shared}/models/tiny-rwkv-6v0-1m/hf/model.safetensors")
    state = {}
    for name, value in tensors.items():
        as_bf16 = value.to(torch.bfloat16)
        assert torch.equal(as_bf16.float(), value), f"{name} is not exactly representable in bf16"
        state[blink_name(name)] = as_bf16
    torch.save(state, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
