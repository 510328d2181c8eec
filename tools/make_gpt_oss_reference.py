#!/usr/bin/python3
"""Writes the PyTorch reference numbers and checkpoints for Switchyard's gpt-oss parity tests.

Usage (from the repository root, with the Debian PyTorch):
    /usr/bin/python3 tools/make_gpt_oss_reference.py [--data-dir tests/data] [--seed 4321]

Writes, under --data-dir:
  gpt_oss_reference/                 the model as published checkpoints are laid out:
      config.json                    model_type "gpt_oss", the published keys, quantization_config
      model-00001-of-00002.safetensors, model-00002-of-00002.safetensors
      model.safetensors.index.json   {"metadata": {"total_size": N}, "weight_map": {name: file}}
                                     experts as MXFP4 (*_blocks uint8 [E, out, in/32, 16],
                                     *_scales uint8 [E, out, in/32]); everything else bf16.
                                     The split falls inside layer 1, so a loader must use the index.
  gpt_oss_reference_fp32/            the same model unquantised: config.json and model.safetensors,
                                     every tensor fp32, experts as gate_up_proj [E, hidden, 2I] and
                                     down_proj [E, I, hidden] (Hugging Face's unquantised layout)
  gpt_oss_reference.safetensors      the numbers (computed in float64 from the float32 weights,
                                     stored as float32 unless noted):
      inputs, targets                [B, T] int32
      logits                         [B, T, V] of the fp32 model
      loss.lm, loss.aux, loss.total  [1] mean cross-entropy, load-balancing loss (over all layers),
                                     and lm + router_aux_loss_coef * aux
      grad.<name>                    gradient of loss.total for every parameter (Hugging Face names)
      adamw_losses                   [10] loss.total before each of 10 AdamW steps on the same batch
      float32_error.grad.<name> [1], float32_error.adamw_losses [10]: how far PyTorch's float32
                                     lands from these (relative), the yardstick for float32 error
      rope.inv_freq                  [head_dim/2] YaRN inverse frequencies; rope.attention_factor [1]
      mxfp4.logits                   [B, T, V] of the checkpoint in gpt_oss_reference/ (bf16 and
                                     MXFP4 weights decoded to fp32, computed in fp32)
      mxfp4.decoded.model.layers.0.mlp.experts.down_proj
                                     [E, I, hidden] that tensor decoded from its blocks and scales
      greedy.prompt                  [12] int32; greedy.fp32 and greedy.mxfp4 [64] int32: the ids
                                     greedy decoding appends for each model (KV cache, one prefill)
      varlen.lengths [3] int32, varlen.inputs [sum] int32, varlen.logits [sum, V]: sequences of
                                     lengths 5, 13, 21, each run alone, concatenated
      __metadata__                   config, optimizer settings and decision margins, as strings

The sizes are odd on purpose (6 query heads over 2 kv heads, head_dim 16 with hidden 96, 5 experts,
vocabulary 997, T = 21 > window 8) so that kernels that assume aligned or power-of-two shapes fail.
Every parameter is random, so every gradient is non-trivial. The run is deterministic (seeded, one
thread). Seeds whose routing or greedy choices are near ties are skipped: a reference whose top-k or
argmax could flip under fp32 reordering would make a parity test flaky.
"""

import argparse
import copy
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt_oss_torch as go  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = go.GptOssConfig(num_hidden_layers=3, hidden_size=96, num_attention_heads=6,
                         num_key_value_heads=2, head_dim=16, num_local_experts=5,
                         num_experts_per_tok=2, intermediate_size=32, sliding_window=8,
                         vocab_size=997, max_position_embeddings=128)
BATCH, SEQ = 2, 21
VARLEN = (5, 13, 21)
PROMPT_LEN, GREEDY_NEW = 12, 64
LR, BETA1, BETA2, EPS, WEIGHT_DECAY = 1e-3, 0.9, 0.95, 1e-8, 0.1
ADAMW_STEPS = 10
# A routing decision (k-th vs (k+1)-th router logit) or a greedy argmax closer than this is a tie
# that fp32 summation order could flip; seeds that produce one are skipped.
MIN_MARGIN = 1e-3


# ---------------------------------------------------------------- safetensors, by hand

class Bf16:
    """A bf16 tensor for the writer: its raw 16-bit patterns as numpy uint16."""

    def __init__(self, bits):
        self.bits = np.ascontiguousarray(bits, dtype="<u2")
        self.shape = self.bits.shape


def to_bf16(t):
    """float tensor -> Bf16 (round to nearest even, as torch's conversion does)."""
    bits = t.detach().to(torch.bfloat16).contiguous().view(torch.int16).numpy().view(np.uint16)
    return Bf16(bits)


def bf16_to_float(bits):
    """uint16 patterns -> float32 tensor (exact: bf16 is the top half of an fp32)."""
    return torch.from_numpy((bits.astype(np.uint32) << 16).view(np.float32).copy())


_DTYPES = {np.dtype("<f4"): "F32", np.dtype("<i4"): "I32", np.dtype("uint8"): "U8"}
_NP_OF = {"F32": np.dtype("<f4"), "I32": np.dtype("<i4"), "U8": np.dtype("uint8"),
          "BF16": np.dtype("<u2")}


def write_safetensors(path, tensors, metadata=None):
    """tensors: ordered dict name -> numpy array (float32, int32, uint8) or Bf16. metadata: dict
    str -> str or None. Layout: u64 little-endian header size, JSON header (space-padded to a
    multiple of 8), raw little-endian data in the order given. Returns the data section's size."""
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        if isinstance(arr, Bf16):
            dtype, raw = "BF16", arr.bits.tobytes()
        else:
            arr = np.ascontiguousarray(arr)
            arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
            if arr.dtype not in _DTYPES:
                raise ValueError(f"tensor {name}: dtype {arr.dtype} is not float32, int32 or uint8")
            dtype, raw = _DTYPES[arr.dtype], arr.tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    if metadata:
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
    return offset


def read_safetensors(path):
    """Tiny independent reader. Returns (dict name -> (dtype string, numpy array), metadata);
    BF16 arrays come back as their uint16 patterns."""
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
    out, spans = {}, []
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dt = _NP_OF[info["dtype"]]
        count = int(np.prod(info["shape"], dtype=np.int64))
        if end - begin != count * dt.itemsize or end > len(body):
            raise ValueError(f"{path}: tensor {name} has offsets {begin}..{end} for shape {info['shape']}")
        arr = np.frombuffer(body, dtype=dt, count=count, offset=begin).reshape(info["shape"])
        out[name] = (info["dtype"], arr)
        spans.append((begin, end))
    spans.sort()
    pos = 0
    for begin, end in spans:
        if begin != pos:
            raise ValueError(f"{path}: gap or overlap at byte {pos} of the data section")
        pos = end
    if pos != len(body):
        raise ValueError(f"{path}: {len(body) - pos} trailing bytes after the last tensor")
    return out, metadata


# ---------------------------------------------------------------- config.json

def hf_config(cfg, quantized):
    """config.json with the keys of the published gpt-oss configs (values for this model)."""
    c = {
        "architectures": ["GptOssForCausalLM"],
        "attention_bias": True,
        "attention_dropout": 0.0,
        "eos_token_id": cfg.vocab_size - 1,
        "experts_per_token": cfg.num_experts_per_tok,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "hidden_size": cfg.hidden_size,
        "initial_context_length": cfg.rope_original_max_position_embeddings,
        "initializer_range": 0.02,
        "intermediate_size": cfg.intermediate_size,
        "layer_types": list(cfg.layer_types),
        "max_position_embeddings": cfg.max_position_embeddings,
        "model_type": "gpt_oss",
        "num_attention_heads": cfg.num_attention_heads,
        "num_experts_per_tok": cfg.num_experts_per_tok,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_key_value_heads": cfg.num_key_value_heads,
        "num_local_experts": cfg.num_local_experts,
        "output_router_logits": False,
        "pad_token_id": cfg.vocab_size - 2,
        "rms_norm_eps": cfg.rms_norm_eps,
        "rope_scaling": {
            "beta_fast": cfg.rope_beta_fast,
            "beta_slow": cfg.rope_beta_slow,
            "factor": cfg.rope_scaling_factor,
            "original_max_position_embeddings": cfg.rope_original_max_position_embeddings,
            "rope_type": "yarn",
            "truncate": False,
        },
        "rope_theta": cfg.rope_theta,
        "router_aux_loss_coef": cfg.router_aux_loss_coef,
        "sliding_window": cfg.sliding_window,
        "swiglu_limit": cfg.swiglu_limit,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16" if quantized else "float32",
        "use_cache": True,
        "vocab_size": cfg.vocab_size,
    }
    if quantized:
        c["quantization_config"] = {
            "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                       "model.embed_tokens", "lm_head"],
            "quant_method": "mxfp4",
        }
    return c


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


# ---------------------------------------------------------------- checkpoints

EXPERT_MATRICES = ("mlp.experts.gate_up_proj", "mlp.experts.down_proj")


def is_expert_matrix(name):
    return name.endswith(EXPERT_MATRICES)


def quantized_tensors(model):
    """The published layout: name -> Bf16 or uint8 array, in state_dict order."""
    out = {}
    for name, p in model.state_dict().items():
        if is_expert_matrix(name):
            blocks, scales = go.experts_to_mxfp4(p)
            out[name + "_blocks"] = blocks.numpy()
            out[name + "_scales"] = scales.numpy()
        else:
            out[name] = to_bf16(p)
    return out


def dequantized_state(tensors):
    """Inverse of quantized_tensors: Hugging Face unquantised names -> float32 tensors."""
    state = {}
    for name, t in tensors.items():
        if name.endswith("_scales"):
            continue
        if name.endswith("_blocks"):
            base = name[:-len("_blocks")]
            state[base] = go.experts_from_mxfp4(torch.from_numpy(np.array(t)),
                                                torch.from_numpy(np.array(tensors[base + "_scales"])))
        else:
            state[name] = bf16_to_float(t.bits)
    return state


def write_quantized_checkpoint(directory, cfg, tensors):
    """Two shards split inside layer 1 (its attention in the first file, its MLP in the second)."""
    os.makedirs(directory, exist_ok=True)
    names = list(tensors)
    split = next(i for i, n in enumerate(names) if n.startswith("model.layers.1.mlp."))
    shards = [("model-00001-of-00002.safetensors", names[:split]),
              ("model-00002-of-00002.safetensors", names[split:])]
    weight_map, total = {}, 0
    for fname, part in shards:
        total += write_safetensors(os.path.join(directory, fname), {n: tensors[n] for n in part},
                                   {"format": "pt"})
        for n in part:
            weight_map[n] = fname
    write_json(os.path.join(directory, "model.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})
    write_json(os.path.join(directory, "config.json"), hf_config(cfg, quantized=True))


def write_fp32_checkpoint(directory, cfg, model):
    os.makedirs(directory, exist_ok=True)
    tensors = {n: p.detach().to(torch.float32).numpy().copy() for n, p in model.state_dict().items()}
    write_safetensors(os.path.join(directory, "model.safetensors"), tensors, {"format": "pt"})
    write_json(os.path.join(directory, "config.json"), hf_config(cfg, quantized=False))


# ---------------------------------------------------------------- margins

def router_margin(model, idx):
    """Smallest gap, over every token and layer, between the k-th and (k+1)-th router logit."""
    k, E = model.cfg.num_experts_per_tok, model.cfg.num_local_experts
    gaps = []

    def hook(_module, _inputs, logits):
        if k < E:
            top = torch.topk(logits, k + 1, dim=-1).values
            gaps.append(float((top[:, k - 1] - top[:, k]).min()))

    handles = [layer.mlp.router.register_forward_hook(hook) for layer in model.model.layers]
    try:
        with torch.no_grad():
            model(idx)
    finally:
        for h in handles:
            h.remove()
    return min(gaps) if gaps else float("inf")


# ---------------------------------------------------------------- one attempt

def adamw_run(model, inputs, targets, router_margins):
    """The total loss before each of ADAMW_STEPS AdamW steps on a copy of `model` (in its dtype),
    appending each step's routing margin to `router_margins`."""
    trained = copy.deepcopy(model)
    opt = torch.optim.AdamW(go.adamw_param_groups(trained, WEIGHT_DECAY), lr=LR,
                            betas=(BETA1, BETA2), eps=EPS, foreach=False)
    losses_seen = []
    for _ in range(ADAMW_STEPS):
        router_margins.append(router_margin(trained, inputs))
        opt.zero_grad(set_to_none=True)
        _, losses, _ = trained(inputs, targets)
        losses["total"].backward()
        losses_seen.append(losses["total"].item())
        opt.step()
    return losses_seen


def float32_errors(model, inputs, targets, adamw_losses):
    """How far PyTorch's own float32 lands from the exact (float64) results: each gradient's
    relative error (L2 norms, as the tests measure) and each AdamW loss's. Some gradients here are
    sums whose terms nearly cancel (biases whose effect a softmax or a norm almost removes), and
    AdamW moves a weight whose gradient is near zero by about +-lr on the gradient's sign, so a
    correct float32 computation can land 1e-5 away; the parity tests allow twice this much where
    it exceeds half their tolerance. `model` must hold its float64 gradients already."""
    m32 = copy.deepcopy(model).float()
    m32.zero_grad(set_to_none=True)
    m32(inputs, targets)[1]["total"].backward()
    grad_errors = {}
    for (n, p64), (_, p32) in zip(model.named_parameters(), m32.named_parameters()):
        grad_errors[n] = ((p32.grad.double() - p64.grad).norm() / p64.grad.norm()).item()
    m32.zero_grad(set_to_none=True)
    losses32 = adamw_run(m32, inputs, targets, [])
    loss_errors = [abs(a - b) / abs(b) for a, b in zip(losses32, adamw_losses)]
    return grad_errors, loss_errors


def build(seed):
    """Everything for one seed. Returns a dict of results, or None when a decision is a near tie."""
    cfg = CONFIG
    torch.manual_seed(seed)
    model = go.GptOss(cfg)
    model.init_random()
    V = cfg.vocab_size
    inputs = torch.randint(0, V, (BATCH, SEQ), dtype=torch.long)
    targets = torch.randint(0, V, (BATCH, SEQ), dtype=torch.long)
    varlen = [torch.randint(0, V, (1, n), dtype=torch.long) for n in VARLEN]
    prompt = torch.randint(0, V, (PROMPT_LEN,), dtype=torch.long).tolist()

    qtensors = quantized_tensors(model)
    qmodel = go.GptOss(cfg)
    qmodel.load_state_dict(dequantized_state(qtensors))
    # The numbers are computed in float64 from the float32 weights (exactly representable), so
    # that the reference is the exact result and not one more float32 rounding of it: some
    # gradients (biases whose effect softmax nearly cancels) lose ~1e-5 to float32 summation.
    model, qmodel = model.double(), qmodel.double()

    margins = {"router": [], "greedy": []}
    greedy = {}
    for tag, m in (("fp32", model), ("mxfp4", qmodel)):
        margins["router"].append(router_margin(m, inputs))
        for seq in varlen:
            margins["router"].append(router_margin(m, seq))
        ids, gm = m.greedy(prompt, GREEDY_NEW)
        greedy[tag] = ids
        margins["greedy"].append(min(gm))
        margins["router"].append(router_margin(m, torch.tensor([prompt + ids[:-1]])))

    # Ten AdamW steps (on a copy; the model itself stays at its initial weights).
    adamw_losses = adamw_run(model, inputs, targets, margins["router"])

    if min(margins["router"]) < MIN_MARGIN or min(margins["greedy"]) < MIN_MARGIN:
        return None

    logits, losses, _ = model(inputs, targets)
    model.zero_grad(set_to_none=True)
    losses["total"].backward()
    grads = {}
    for n, p in model.named_parameters():
        if p.grad is None or not torch.any(p.grad != 0):
            raise RuntimeError(f"gradient of {n} is missing or all zero")
        grads[n] = p.grad.detach().numpy().astype(np.float32)
    with torch.no_grad():
        qlogits, _, _ = qmodel(inputs)
        varlen_logits = [model(seq)[0][0] for seq in varlen]
    grad_errors, loss_errors = float32_errors(model, inputs, targets, adamw_losses)
    if adamw_losses[0] != losses["total"].item():
        raise RuntimeError(f"adamw_losses[0] {adamw_losses[0]} != loss {losses['total'].item()}")
    if not adamw_losses[-1] < adamw_losses[0]:
        raise RuntimeError(f"AdamW did not lower the loss: {adamw_losses}")
    return dict(model=model, qtensors=qtensors, inputs=inputs, targets=targets, varlen=varlen,
                prompt=prompt, greedy=greedy, logits=logits, losses=losses, grads=grads,
                qlogits=qlogits, varlen_logits=varlen_logits, adamw_losses=adamw_losses,
                grad_float32_errors=grad_errors, adamw_float32_errors=loss_errors,
                margins=margins, dequantized=dequantized_state(qtensors))


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.path.join(REPO, "tests/data"))
    ap.add_argument("--seed", type=int, default=4321,
                    help="first seed tried; the next ones are tried while decisions are near ties")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    cfg = CONFIG

    seed, r = args.seed, None
    for seed in range(args.seed, args.seed + 50):
        r = build(seed)
        if r is not None:
            break
    if r is None:
        raise RuntimeError("every seed tried has a near-tie routing or greedy decision")

    out = os.path.abspath(args.data_dir)
    qdir = os.path.join(out, "gpt_oss_reference")
    fdir = os.path.join(out, "gpt_oss_reference_fp32")
    write_quantized_checkpoint(qdir, cfg, r["qtensors"])
    write_fp32_checkpoint(fdir, cfg, r["model"])

    inv_freq, attention_factor = go.yarn_inv_freq(cfg)
    f32 = lambda t: t.detach().numpy().astype(np.float32).copy()  # noqa: E731
    i32 = lambda t: np.asarray(t, dtype=np.int32)  # noqa: E731
    tensors = {
        "inputs": i32(r["inputs"]),
        "targets": i32(r["targets"]),
        "logits": f32(r["logits"]),
        "loss.lm": np.array([r["losses"]["lm"].item()], dtype=np.float32),
        "loss.aux": np.array([r["losses"]["aux"].item()], dtype=np.float32),
        "loss.total": np.array([r["losses"]["total"].item()], dtype=np.float32),
    }
    for n, g in r["grads"].items():
        tensors["grad." + n] = g
    tensors["adamw_losses"] = np.array(r["adamw_losses"], dtype=np.float32)
    for n, e in r["grad_float32_errors"].items():
        tensors["float32_error.grad." + n] = np.array([e], dtype=np.float32)
    tensors["float32_error.adamw_losses"] = np.array(r["adamw_float32_errors"], dtype=np.float32)
    tensors["rope.inv_freq"] = inv_freq.numpy().astype(np.float32)
    tensors["rope.attention_factor"] = np.array([attention_factor], dtype=np.float32)
    tensors["mxfp4.logits"] = f32(r["qlogits"])
    down0 = "model.layers.0.mlp.experts.down_proj"
    tensors["mxfp4.decoded." + down0] = f32(r["dequantized"][down0])
    tensors["greedy.prompt"] = i32(r["prompt"])
    tensors["greedy.fp32"] = i32(r["greedy"]["fp32"])
    tensors["greedy.mxfp4"] = i32(r["greedy"]["mxfp4"])
    tensors["varlen.lengths"] = i32(VARLEN)
    tensors["varlen.inputs"] = i32(torch.cat([s[0] for s in r["varlen"]]))
    tensors["varlen.logits"] = f32(torch.cat(r["varlen_logits"]))

    metadata = {
        "config": json.dumps(hf_config(cfg, quantized=False), sort_keys=True),
        "batch": str(BATCH), "seq": str(SEQ),
        "lr": repr(LR), "beta1": repr(BETA1), "beta2": repr(BETA2), "eps": repr(EPS),
        "weight_decay": repr(WEIGHT_DECAY), "adamw_steps": str(ADAMW_STEPS),
        "adamw_no_decay": "every *bias (expert biases included), *norm.weight, *sinks",
        "loss": "total = mean cross-entropy over B*T + router_aux_loss_coef * aux",
        "greedy": f"prompt of {PROMPT_LEN}, {GREEDY_NEW} new ids, one prefill then one token a step",
        "min_router_margin": repr(min(r["margins"]["router"])),
        "min_greedy_margin": repr(min(r["margins"]["greedy"])),
        "mxfp4_encoding": "scale = ceil(log2(amax/6)) + 127, codes round to nearest, ties to even",
        "seed": str(seed),
        "generator": "tools/make_gpt_oss_reference.py, torch " + torch.__version__,
    }
    ref_path = os.path.join(out, "gpt_oss_reference.safetensors")
    write_safetensors(ref_path, tensors, metadata)

    # Self-check: read everything back with the tiny reader.
    back, back_meta = read_safetensors(ref_path)
    if back_meta != metadata or list(back) != list(tensors):
        raise RuntimeError("reference file read back differs")
    for n, arr in tensors.items():
        if back[n][1].tobytes() != np.ascontiguousarray(arr).tobytes():
            raise RuntimeError(f"tensor {n} read back differs")
    with open(os.path.join(qdir, "model.safetensors.index.json")) as f:
        weight_map = json.load(f)["weight_map"]
    qback = {}
    for fname in sorted(set(weight_map.values())):
        part, _ = read_safetensors(os.path.join(qdir, fname))
        for n, (dt, arr) in part.items():
            if weight_map[n] != fname:
                raise RuntimeError(f"{n} is in {fname} but the index says {weight_map[n]}")
            qback[n] = Bf16(arr) if dt == "BF16" else arr
    if set(qback) != set(weight_map):
        raise RuntimeError("index and shards name different tensors")
    for n, t in dequantized_state(qback).items():
        if not torch.equal(t, r["dequantized"][n]):
            raise RuntimeError(f"{n} decoded from the shards differs")

    sizes = {}
    for root in (qdir, fdir):
        for fname in sorted(os.listdir(root)):
            sizes[os.path.relpath(os.path.join(root, fname), out)] = os.path.getsize(os.path.join(root, fname))
    sizes["gpt_oss_reference.safetensors"] = os.path.getsize(ref_path)
    for k, v in sizes.items():
        print(f"  {k}: {v} bytes")
    print(f"total {sum(sizes.values())} bytes; seed {seed}; loss lm {r['losses']['lm'].item():.6f} "
          f"aux {r['losses']['aux'].item():.6f} total {r['losses']['total'].item():.6f}; adamw "
          f"{r['adamw_losses'][0]:.6f} -> {r['adamw_losses'][-1]:.6f}; min router margin "
          f"{min(r['margins']['router']):.2e}, min greedy margin {min(r['margins']['greedy']):.2e}")


if __name__ == "__main__":
    main()
