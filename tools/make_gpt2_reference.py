#!/usr/bin/python3
"""Writes the PyTorch reference numbers for Switchyard's GPT-2 parity tests.

Usage (from the repository root, with the Debian PyTorch):
    /usr/bin/python3 tools/make_gpt2_reference.py \
        [--out tests/data/gpt2_reference.safetensors] \
        [--config-out tests/data/gpt2_reference_config.json] [--seed 1234]

Output (safetensors, written by hand below; float32 unless noted):
    <param>                       every parameter, Hugging Face GPT-2 names without "transformer."
                                  (wte.weight, wpe.weight, h.{i}.ln_1.weight, ..., ln_f.bias);
                                  linear weights in Conv1D layout [in, out]
    grad.<param>                  gradient of the mean loss (wte's includes the tied LM head)
    inputs, targets               [B, T] int32 random tokens in [0, V)
    logits                        [B, T, V]
    loss                          [1] mean cross-entropy over all B*T positions
    adamw_losses                  [10] loss before each of 10 AdamW steps on the same batch
    params_after_adamw.<param>    every parameter after those 10 steps
    __metadata__                  config and optimizer settings, each value a string
plus a Hugging Face style config.json for the same model.

The sizes are odd on purpose (no shape is a power of two) so that kernels that silently assume
aligned or power-of-two shapes fail the parity test. Every parameter, biases and LayerNorm included,
is random so that every gradient is non-trivial. The run is deterministic (seeded, one thread).
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt2_torch import GPT2, GPT2Config, adamw_param_groups  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = GPT2Config(n_layer=2, n_head=3, n_embd=54, vocab_size=211, n_positions=29)
BATCH, SEQ = 3, 13
LR, BETA1, BETA2, EPS, WEIGHT_DECAY = 1e-3, 0.9, 0.95, 1e-8, 0.1
ADAMW_STEPS = 10

_DTYPES = {np.dtype("<f4"): "F32", np.dtype("<i4"): "I32"}
_NP_OF = {"F32": np.dtype("<f4"), "I32": np.dtype("<i4")}


# ---------------------------------------------------------------- safetensors, by hand

def write_safetensors(path, tensors, metadata):
    """tensors: ordered dict name -> numpy array (float32 or int32). metadata: dict str -> str.
    Layout: u64 little-endian header size, JSON header (space-padded to a multiple of 8), raw data."""
    header = {}
    blobs = []
    offset = 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        if arr.dtype not in _DTYPES:
            raise ValueError(f"tensor {name}: dtype {arr.dtype} is not float32 or int32")
        raw = arr.tobytes()
        header[name] = {"dtype": _DTYPES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise ValueError(f"metadata {k!r}: keys and values must be strings")
    header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


def read_safetensors(path):
    """Tiny independent reader used for the self-check. Returns (dict name -> array, metadata)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: shorter than the 8-byte header size")
    (n,) = struct.unpack_from("<Q", data, 0)
    if n % 8 != 0 or 8 + n > len(data):
        raise ValueError(f"{path}: header size {n} is not a multiple of 8 or runs past the file")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    body = data[8 + n:]
    spans = []
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dt = _NP_OF[info["dtype"]]
        count = int(np.prod(info["shape"], dtype=np.int64))
        if end - begin != count * dt.itemsize or end > len(body):
            raise ValueError(f"{path}: tensor {name} has offsets {begin}..{end} for shape {info['shape']}")
        out[name] = np.frombuffer(body, dtype=dt, count=count, offset=begin).reshape(info["shape"])
        spans.append((begin, end))
    # The data section must be covered exactly, with no gaps or overlaps.
    spans.sort()
    pos = 0
    for begin, end in spans:
        if begin != pos:
            raise ValueError(f"{path}: gap or overlap at byte {pos} of the data section")
        pos = end
    if pos != len(body):
        raise ValueError(f"{path}: {len(body) - pos} trailing bytes after the last tensor")
    return out, metadata


# ---------------------------------------------------------------- independent forward in numpy

def numpy_forward(params, idx, cfg):
    """A second, separately written forward pass (float64 numpy) to check the torch module."""
    p = {k: v.astype(np.float64) for k, v in params.items()}
    B, T = idx.shape
    C, NH = cfg.n_embd, cfg.n_head
    hs = C // NH

    def layernorm(x, w, b):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + cfg.layer_norm_epsilon) * w + b

    def gelu(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    x = p["wte.weight"][idx] + p["wpe.weight"][:T][None]
    for i in range(cfg.n_layer):
        g = lambda s: p[f"h.{i}.{s}"]  # noqa: E731
        h = layernorm(x, g("ln_1.weight"), g("ln_1.bias"))
        qkv = h @ g("attn.c_attn.weight") + g("attn.c_attn.bias")
        y = np.zeros((B, T, C))
        for hd in range(NH):
            q = qkv[:, :, hd * hs:(hd + 1) * hs]
            k = qkv[:, :, C + hd * hs:C + (hd + 1) * hs]
            v = qkv[:, :, 2 * C + hd * hs:2 * C + (hd + 1) * hs]
            s = np.einsum("btd,bsd->bts", q, k) / math.sqrt(hs)
            s = np.where(np.tril(np.ones((T, T), dtype=bool))[None], s, -np.inf)
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            y[:, :, hd * hs:(hd + 1) * hs] = np.einsum("bts,bsd->btd", s, v)
        x = x + y @ g("attn.c_proj.weight") + g("attn.c_proj.bias")
        h = layernorm(x, g("ln_2.weight"), g("ln_2.bias"))
        h = gelu(h @ g("mlp.c_fc.weight") + g("mlp.c_fc.bias"))
        x = x + h @ g("mlp.c_proj.weight") + g("mlp.c_proj.bias")
    x = layernorm(x, p["ln_f.weight"], p["ln_f.bias"])
    return x @ p["wte.weight"].T


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests/data/gpt2_reference.safetensors"))
    ap.add_argument("--config-out", default=os.path.join(REPO, "tests/data/gpt2_reference_config.json"))
    ap.add_argument("--seed", type=int, default=1234)
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    torch.set_default_dtype(torch.float32)
    cfg = CONFIG

    model = GPT2(cfg)
    names = [n for n, _ in model.named_parameters()]
    inputs = torch.randint(0, cfg.vocab_size, (BATCH, SEQ), dtype=torch.long)
    targets = torch.randint(0, cfg.vocab_size, (BATCH, SEQ), dtype=torch.long)

    tensors = {}
    for n, p in model.named_parameters():
        tensors[n] = p.detach().numpy().copy()

    logits, loss, _ = model(inputs, targets)
    model.zero_grad(set_to_none=True)
    loss.backward()
    for n, p in model.named_parameters():
        if p.grad is None or not torch.any(p.grad != 0):
            raise RuntimeError(f"gradient of {n} is missing or all zero")
        tensors["grad." + n] = p.grad.detach().numpy().copy()
    tensors["inputs"] = inputs.numpy().astype(np.int32)
    tensors["targets"] = targets.numpy().astype(np.int32)
    tensors["logits"] = logits.detach().numpy().copy()
    tensors["loss"] = np.array([loss.item()], dtype=np.float32)

    # The torch module must agree with the separately written numpy forward.
    ref = numpy_forward({n: tensors[n] for n in names}, inputs.numpy(), cfg)
    max_err = np.abs(ref - tensors["logits"]).max()
    if max_err > 1e-5:
        raise RuntimeError(f"torch logits differ from the numpy forward by {max_err}")
    lse = np.log(np.exp(ref - ref.max(-1, keepdims=True)).sum(-1)) + ref.max(-1)
    ref_loss = (lse - np.take_along_axis(ref, targets.numpy()[..., None], -1)[..., 0]).mean()
    if abs(ref_loss - loss.item()) > 1e-5:
        raise RuntimeError(f"torch loss {loss.item()} differs from the numpy loss {ref_loss}")

    # Ten AdamW steps on the same batch; record the loss before each update.
    opt = torch.optim.AdamW(adamw_param_groups(model, WEIGHT_DECAY), lr=LR, betas=(BETA1, BETA2),
                            eps=EPS, foreach=False)
    losses = []
    for _ in range(ADAMW_STEPS):
        opt.zero_grad(set_to_none=True)
        _, l, _ = model(inputs, targets)
        l.backward()
        losses.append(l.item())
        opt.step()
    if losses[0] != loss.item():
        raise RuntimeError(f"adamw_losses[0] {losses[0]} != loss {loss.item()}")
    if not losses[-1] < losses[0]:
        raise RuntimeError(f"AdamW did not lower the loss: {losses}")
    tensors["adamw_losses"] = np.array(losses, dtype=np.float32)
    for n, p in model.named_parameters():
        tensors["params_after_adamw." + n] = p.detach().numpy().copy()

    metadata = {
        "n_layer": str(cfg.n_layer), "n_head": str(cfg.n_head), "n_embd": str(cfg.n_embd),
        "vocab_size": str(cfg.vocab_size), "n_positions": str(cfg.n_positions),
        "batch": str(BATCH), "seq": str(SEQ),
        "lr": repr(LR), "beta1": repr(BETA1), "beta2": repr(BETA2), "eps": repr(EPS),
        "weight_decay": repr(WEIGHT_DECAY), "adamw_steps": str(ADAMW_STEPS),
        "layer_norm_epsilon": repr(cfg.layer_norm_epsilon), "seed": str(args.seed),
        "generator": "tools/make_gpt2_reference.py, torch " + torch.__version__,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    write_safetensors(args.out, tensors, metadata)

    hf_config = {"model_type": "gpt2", "n_layer": cfg.n_layer, "n_head": cfg.n_head,
                 "n_embd": cfg.n_embd, "vocab_size": cfg.vocab_size,
                 "n_positions": cfg.n_positions, "n_ctx": cfg.n_positions,
                 "layer_norm_epsilon": cfg.layer_norm_epsilon, "activation_function": "gelu_new"}
    with open(args.config_out, "w") as f:
        json.dump(hf_config, f, indent=2)
        f.write("\n")

    # Self-check: read the file back with the tiny reader and compare bit for bit.
    back, back_meta = read_safetensors(args.out)
    if back_meta != metadata:
        raise RuntimeError("metadata read back differs")
    if list(back) != list(tensors):
        raise RuntimeError("tensor names read back differ")
    for n, arr in tensors.items():
        b = back[n]
        if b.dtype != arr.dtype.newbyteorder("<") or b.shape != arr.shape or \
                b.tobytes() != np.ascontiguousarray(arr).astype(b.dtype).tobytes():
            raise RuntimeError(f"tensor {n} read back differs")

    size = os.path.getsize(args.out)
    print(f"wrote {args.out}: {len(tensors)} tensors, {size} bytes; loss {loss.item():.6f}, "
          f"adamw losses {losses[0]:.6f} -> {losses[-1]:.6f}; numpy forward max |diff| {max_err:.2e}")
    print(f"wrote {args.config_out}")


if __name__ == "__main__":
    main()
