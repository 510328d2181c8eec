#!/usr/bin/python3
"""Checks the gpt-oss PyTorch reference (tools/gpt_oss_torch.py) and the files written by
tools/make_gpt_oss_reference.py against separately written computations.

Usage (from anywhere; exits 77, "skipped", when numpy or PyTorch is missing):
    /usr/bin/python3 tools/check_gpt_oss_reference.py [--data-dir tests/data]

What is checked, each against a second computation that shares no code with the model:
  - YaRN inverse frequencies and attention factor: the formula in plain Python math, written twice
    (Hugging Face's correction-dimension form and OpenAI's d_half form);
  - MXFP4: the decoder against a hand-written table of the 16 E2M1 values and a bit-level decoding
    of every byte; the encoder's round trip, saturation-free scale and ties-to-even rule;
  - a whole forward pass in float64 numpy with an explicit loop per query (attention with sinks,
    grouped kv heads and sliding windows) and per token (top-k routing, clamped SwiGLU), from the
    fp32 checkpoint files, against the stored logits, losses and per-sequence logits;
  - the load-balancing loss recomputed in numpy from the loop forward's router logits;
  - gradients of several parameters against central finite differences in float64, and the stored
    fp32 gradients against float64 autograd;
  - the MXFP4 checkpoint: the shards through their index, decoded, against the stored mxfp4.logits;
  - greedy ids: recomputed without the KV cache (the whole sequence every step) for both models.
"""

import argparse
import json
import math
import os
import sys

try:
    import numpy as np
    import torch
except ImportError as e:  # the C++ suite must not depend on PyTorch
    print(f"skipped: {e}")
    sys.exit(77)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt_oss_torch as go  # noqa: E402
from make_gpt_oss_reference import (CONFIG, Bf16, dequantized_state,  # noqa: E402
                                    read_safetensors)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
failures = []


def check(name, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")
    if not ok:
        failures.append(name)


def max_rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


# ---------------------------------------------------------------- YaRN in plain Python

def yarn_plain(head_dim, base, factor, original_ctx, beta_fast, beta_slow):
    """Hugging Face's form: correction dimensions d*ln(L0/(2*pi*beta)) / (2*ln(base))."""
    def corr(beta):
        return head_dim * math.log(original_ctx / (beta * 2 * math.pi)) / (2 * math.log(base))
    low, high = max(corr(beta_fast), 0.0), min(corr(beta_slow), head_dim - 1)
    out = []
    for i in range(head_dim // 2):
        pos_freq = base ** ((2 * i) / head_dim)
        ramp = min(max((i - low) / (high - low), 0.0), 1.0)
        extrapolation_factor = 1.0 - ramp
        out.append((1.0 / (factor * pos_freq)) * (1.0 - extrapolation_factor)
                   + (1.0 / pos_freq) * extrapolation_factor)
    return out, 0.1 * math.log(factor) + 1.0


def yarn_openai_form(head_dim, base, factor, original_ctx, ntk_beta, ntk_alpha):
    """OpenAI's form: d_half * ln(L0 / (beta*2*pi)) / ln(base), mask = 1 - clamp(ramp)."""
    d_half = head_dim / 2
    low = d_half * math.log(original_ctx / (ntk_beta * 2 * math.pi)) / math.log(base)
    high = d_half * math.log(original_ctx / (ntk_alpha * 2 * math.pi)) / math.log(base)
    assert 0 < low < high < d_half - 1
    out = []
    for i in range(int(d_half)):
        freq = base ** (2 * i / head_dim)
        mask = 1 - min(max((i - low) / (high - low), 0.0), 1.0)
        out.append((1.0 / (factor * freq)) * (1 - mask) + (1.0 / freq) * mask)
    return out, 0.1 * math.log(factor) + 1.0


def check_yarn(cfg):
    got, factor = go.yarn_inv_freq(cfg)
    args = (cfg.head_dim, cfg.rope_theta, cfg.rope_scaling_factor,
            cfg.rope_original_max_position_embeddings, cfg.rope_beta_fast, cfg.rope_beta_slow)
    for label, fn in (("hf form", yarn_plain), ("openai form", yarn_openai_form)):
        want, want_factor = fn(*args)
        err = max(abs(g - w) / w for g, w in zip(got.tolist(), want))
        check(f"yarn inv_freq ({label})", err < 1e-12 and abs(factor - want_factor) < 1e-15,
              f"max rel err {err:.1e}, attention factor {factor:.12f}")
    # The published 64-dim head as well, so the preset's numbers are covered too.
    big = go.PRESETS["gpt-oss-20b"]
    got, _ = go.yarn_inv_freq(big)
    want, _ = yarn_openai_form(big.head_dim, big.rope_theta, big.rope_scaling_factor,
                               big.rope_original_max_position_embeddings, 32.0, 1.0)
    err = max(abs(g - w) / w for g, w in zip(got.tolist(), want))
    check("yarn inv_freq (gpt-oss-20b head_dim 64)", err < 1e-12, f"max rel err {err:.1e}")
    # Some pairs keep their frequency, some are divided by the factor, some lie on the ramp.
    base_freq = [cfg.rope_theta ** (-2 * i / cfg.head_dim) for i in range(cfg.head_dim // 2)]
    ratio = [f / b for f, b in zip(go.yarn_inv_freq(cfg)[0].tolist(), base_freq)]
    kinds = {"kept": any(abs(r - 1) < 1e-12 for r in ratio),
             "scaled": any(abs(r - 1 / cfg.rope_scaling_factor) < 1e-12 for r in ratio),
             "ramp": any(1 / cfg.rope_scaling_factor + 1e-6 < r < 1 - 1e-6 for r in ratio)}
    check("yarn covers kept, scaled and ramped pairs", all(kinds.values()), str(kinds))


# ---------------------------------------------------------------- MXFP4

# Written out by hand from the E2M1 definition (OCP Microscaling Formats v1.0): code -> value.
E2M1_TABLE = {0b0000: 0.0, 0b0001: 0.5, 0b0010: 1.0, 0b0011: 1.5,
              0b0100: 2.0, 0b0101: 3.0, 0b0110: 4.0, 0b0111: 6.0,
              0b1000: -0.0, 0b1001: -0.5, 0b1010: -1.0, 0b1011: -1.5,
              0b1100: -2.0, 0b1101: -3.0, 0b1110: -4.0, 0b1111: -6.0}


def e2m1_from_bits(code):
    """Sign bit 3, exponent bits 2..1 (bias 1), mantissa bit 0; exponent 0 is subnormal."""
    s, e, m = (code >> 3) & 1, (code >> 1) & 3, code & 1
    mag = m * 0.5 if e == 0 else (1 + m / 2) * 2.0 ** (e - 1)
    return -mag if s else mag


def check_mxfp4():
    check("E2M1 table matches the bit-level definition",
          all(E2M1_TABLE[c] == e2m1_from_bits(c) and
              math.copysign(1, E2M1_TABLE[c]) == math.copysign(1, e2m1_from_bits(c))
              for c in range(16)))
    check("gpt_oss_torch.FP4_E2M1 matches the hand-written table",
          [E2M1_TABLE[c] for c in range(16)] == go.FP4_E2M1)
    g = torch.Generator().manual_seed(7)
    blocks = torch.randint(0, 256, (3, 4, 2, 16), generator=g, dtype=torch.uint8)
    scales = torch.randint(100, 140, (3, 4, 2), generator=g, dtype=torch.uint8)
    got = go.decode_mxfp4(blocks, scales).numpy()
    want = np.zeros((3, 4, 64))
    for a in range(3):
        for r in range(4):
            for b in range(2):
                for j in range(16):
                    byte = int(blocks[a, r, b, j])
                    mult = 2.0 ** (int(scales[a, r, b]) - 127)
                    want[a, r, b * 32 + 2 * j] = E2M1_TABLE[byte & 0xF] * mult
                    want[a, r, b * 32 + 2 * j + 1] = E2M1_TABLE[byte >> 4] * mult
    check("MXFP4 decode, byte by byte", np.array_equal(got, want))

    # Values that are exactly representable come back exactly.
    codes = torch.randint(0, 16, (5, 64), generator=g)
    exps = torch.randint(-10, 5, (5, 2), generator=g)
    exact = torch.tensor([[E2M1_TABLE[int(c)] for c in row] for row in codes], dtype=torch.float32)
    exact = exact * torch.pow(2.0, exps.float()).repeat_interleave(32, dim=1)
    exact[:, 0] = 6.0 * torch.pow(2.0, exps[:, 0].float())  # make each block's maximum a 6
    exact[:, 32] = -6.0 * torch.pow(2.0, exps[:, 1].float())
    b2, s2 = go.encode_mxfp4(exact)
    check("MXFP4 encode/decode round trip of representable values",
          torch.equal(go.decode_mxfp4(b2, s2), exact) and
          torch.equal(s2.long(), (exps + 127).long()))
    # Random values: no saturation (the block maximum fits), and each value is a nearest E2M1 step.
    w = torch.randn(7, 96, generator=g) * 0.05
    b3, s3 = go.encode_mxfp4(w)
    d3 = go.decode_mxfp4(b3, s3)
    ok = True
    for r in range(7):
        for blk in range(3):
            seg = w[r, blk * 32:(blk + 1) * 32].double()
            e = int(s3[r, blk]) - 127
            ok &= float(seg.abs().max()) <= 6 * 2.0 ** e and float(seg.abs().max()) > 6 * 2.0 ** (e - 1)
            grid = sorted({abs(v) * 2.0 ** e for v in E2M1_TABLE.values()})
            for x, y in zip(seg.tolist(), d3[r, blk * 32:(blk + 1) * 32].double().tolist()):
                best = min(abs(abs(x) - q) for q in grid)
                ok &= abs(abs(x) - abs(y)) <= best + 1e-12 and (y == 0 or (x < 0) == (y < 0))
    check("MXFP4 encode: smallest unsaturated scale, nearest values", ok)
    ties = torch.tensor([[6.0, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.25, -2.5] + [0.0] * 22])
    want_ties = torch.tensor([[6.0, 0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, -0.0, -2.0] + [0.0] * 22])
    check("MXFP4 encode: ties go to the even code",
          torch.equal(go.decode_mxfp4(*go.encode_mxfp4(ties)), want_ties))


# ---------------------------------------------------------------- numpy forward with loops

def loop_forward(p, cfg, ids, without=()):
    """ids: [T] ints of ONE sequence at positions 0..T-1. float64 numpy with explicit loops.
    Returns (logits [T, V], router logits per layer [T, E]). without: features to leave out
    ("window", "sinks", "yarn_factor", "interleave"), to show that the reference depends on each."""
    H, KV, D, C = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim, cfg.hidden_size
    E, k = cfg.num_local_experts, cfg.num_experts_per_tok
    T = len(ids)
    inv_freq, factor = yarn_plain(D, cfg.rope_theta, cfg.rope_scaling_factor,
                                  cfg.rope_original_max_position_embeddings, cfg.rope_beta_fast,
                                  cfg.rope_beta_slow)
    if "yarn_factor" in without:
        factor = 1.0

    def rms(x, w):
        return x / math.sqrt(float(np.mean(x * x)) + cfg.rms_norm_eps) * w

    def rope(v, t):
        out = v.copy()
        half = D // 2
        for i in range(half):
            c, s = math.cos(t * inv_freq[i]) * factor, math.sin(t * inv_freq[i]) * factor
            out[i] = v[i] * c - v[i + half] * s
            out[i + half] = v[i + half] * c + v[i] * s
        return out

    x = p["model.embed_tokens.weight"][ids].copy()
    router_logits = []
    for layer in range(cfg.num_hidden_layers):
        g = lambda s: p[f"model.layers.{layer}.{s}"]  # noqa: E731
        W = cfg.sliding_window if cfg.layer_types[layer] == "sliding_attention" else 0
        if "window" in without:
            W = 0
        h = np.stack([rms(x[t], g("input_layernorm.weight")) for t in range(T)])
        q = h @ g("self_attn.q_proj.weight").T + g("self_attn.q_proj.bias")
        kk = h @ g("self_attn.k_proj.weight").T + g("self_attn.k_proj.bias")
        vv = h @ g("self_attn.v_proj.weight").T + g("self_attn.v_proj.bias")
        att = np.zeros((T, H * D))
        for head in range(H):
            kvh = head // (H // KV)
            for t in range(T):
                qt = rope(q[t, head * D:(head + 1) * D], t)
                first = 0 if W == 0 else max(0, t - W + 1)
                keys = range(first, t + 1)
                logits = [float(qt @ rope(kk[s, kvh * D:(kvh + 1) * D], s)) / math.sqrt(D) for s in keys]
                sink = float(g("self_attn.sinks")[head])
                m = max(max(logits), sink)
                ws = [math.exp(lv - m) for lv in logits]
                denom = sum(ws) + (0.0 if "sinks" in without else math.exp(sink - m))
                att[t, head * D:(head + 1) * D] = sum(
                    (wv / denom) * vv[s, kvh * D:(kvh + 1) * D] for wv, s in zip(ws, keys))
        x = x + att @ g("self_attn.o_proj.weight").T + g("self_attn.o_proj.bias")
        h = np.stack([rms(x[t], g("post_attention_layernorm.weight")) for t in range(T)])
        rl = h @ g("mlp.router.weight").T + g("mlp.router.bias")
        router_logits.append(rl)
        out = np.zeros((T, C))
        for t in range(T):
            order = sorted(range(E), key=lambda e: -rl[t, e])[:k]
            top = [rl[t, e] for e in order]
            mx = max(top)
            ex = [math.exp(v - mx) for v in top]
            for e, wgt in zip(order, (v / sum(ex) for v in ex)):
                gu = h[t] @ g("mlp.experts.gate_up_proj")[e] + g("mlp.experts.gate_up_proj_bias")[e]
                act = np.zeros(cfg.intermediate_size)
                for j in range(cfg.intermediate_size):
                    gi, ui = (j, cfg.intermediate_size + j) if "interleave" in without else (2 * j, 2 * j + 1)
                    gate = min(gu[gi], cfg.swiglu_limit)
                    up = min(max(gu[ui], -cfg.swiglu_limit), cfg.swiglu_limit)
                    act[j] = (up + 1) * gate / (1 + math.exp(-cfg.swiglu_alpha * gate))
                out[t] += wgt * (act @ g("mlp.experts.down_proj")[e] + g("mlp.experts.down_proj_bias")[e])
        x = x + out
    x = np.stack([rms(x[t], p["model.norm.weight"]) for t in range(T)])
    return x @ p["lm_head.weight"].T, router_logits


def aux_loss_numpy(router_logits, E, k):
    """Load-balancing loss from the definition: E * sum_j sum_e f[j,e] * P[e] over all rows."""
    rows = np.concatenate(router_logits, axis=0)
    probs = np.exp(rows - rows.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    f = np.zeros((k, E))
    for r in probs:
        for j, e in enumerate(np.argsort(-r, kind="stable")[:k]):
            f[j, e] += 1.0 / len(probs)
    return E * float((f * probs.mean(0)[None, :]).sum())


def cross_entropy_numpy(logits, targets):
    m = logits.max(-1, keepdims=True)
    lse = np.log(np.exp(logits - m).sum(-1)) + m[..., 0]
    return float((lse - np.take_along_axis(logits, targets[..., None], -1)[..., 0]).mean())


# ---------------------------------------------------------------- the files

def load_fp32_checkpoint(directory):
    with open(os.path.join(directory, "config.json")) as f:
        conf = json.load(f)
    tensors, _ = read_safetensors(os.path.join(directory, "model.safetensors"))
    return conf, {n: a.astype(np.float64) for n, (dt, a) in tensors.items()}


def load_quantized_checkpoint(directory):
    with open(os.path.join(directory, "model.safetensors.index.json")) as f:
        weight_map = json.load(f)["weight_map"]
    tensors = {}
    for fname in sorted(set(weight_map.values())):
        part, _ = read_safetensors(os.path.join(directory, fname))
        for n, (dt, a) in part.items():
            tensors[n] = Bf16(a) if dt == "BF16" else a
    return weight_map, tensors


def model_from(state, cfg, dtype=torch.float32):
    m = go.GptOss(cfg)
    m.load_state_dict({n: torch.as_tensor(np.asarray(v)) for n, v in state.items()})
    return m.to(dtype)


def full_recompute_greedy(model, prompt, n):
    """Greedy decoding without any cache: the whole sequence through the model every step."""
    seq = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            logits, _, _ = model(torch.tensor([seq]))
            seq.append(int(torch.argmax(logits[0, -1])))
    return seq[len(prompt):]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=os.path.join(REPO, "tests/data"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = CONFIG

    check_yarn(cfg)
    check_mxfp4()

    ref, meta = read_safetensors(os.path.join(args.data_dir, "gpt_oss_reference.safetensors"))
    ref = {n: a for n, (dt, a) in ref.items()}
    conf, p = load_fp32_checkpoint(os.path.join(args.data_dir, "gpt_oss_reference_fp32"))
    check("fp32 config.json describes the generator's model",
          conf == json.loads(meta["config"]) and conf["model_type"] == "gpt_oss" and
          conf["num_hidden_layers"] == cfg.num_hidden_layers and
          conf["layer_types"] == cfg.layer_types)
    check("stored rope.inv_freq is the plain formula",
          max_rel(ref["rope.inv_freq"], yarn_plain(cfg.head_dim, cfg.rope_theta,
                                                   cfg.rope_scaling_factor, 4096, 32, 1)[0]) < 1e-6)

    # Whole forward, loops, float64, from the checkpoint files.
    inputs, targets = ref["inputs"].astype(np.int64), ref["targets"].astype(np.int64)
    loop_logits, all_router = [], []
    for b in range(inputs.shape[0]):
        lg, rl = loop_forward(p, cfg, inputs[b])
        loop_logits.append(lg)
        all_router.append(rl)
    loop_logits = np.stack(loop_logits)
    err = max_rel(ref["logits"], loop_logits)
    check("logits vs float64 loop forward", err < 2e-5, f"max rel err {err:.1e}")
    lm = cross_entropy_numpy(loop_logits, targets)
    # Rows are ordered (batch, position) within a layer, layers concatenated, as in the model.
    per_layer = [np.concatenate([all_router[b][layer] for b in range(inputs.shape[0])])
                 for layer in range(cfg.num_hidden_layers)]
    aux = aux_loss_numpy(per_layer, cfg.num_local_experts, cfg.num_experts_per_tok)
    total = lm + cfg.router_aux_loss_coef * aux
    for name, want in (("loss.lm", lm), ("loss.aux", aux), ("loss.total", total)):
        e = abs(float(ref[name][0]) - want) / abs(want)
        check(f"{name} vs numpy", e < 1e-5, f"{float(ref[name][0]):.7f} vs {want:.7f}")

    offset = 0
    worst = 0.0
    for n in ref["varlen.lengths"]:
        ids = ref["varlen.inputs"][offset:offset + n].astype(np.int64)
        worst = max(worst, max_rel(ref["varlen.logits"][offset:offset + n], loop_forward(p, cfg, ids)[0]))
        offset += n
    check("varlen logits vs float64 loop forward", worst < 2e-5, f"max rel err {worst:.1e}")

    # The reference depends on each feature: leaving one out moves the logits well past the
    # tolerance above.
    for feature in ("window", "sinks", "yarn_factor", "interleave"):
        e = max_rel(ref["logits"][0], loop_forward(p, cfg, inputs[0], without=(feature,))[0])
        check(f"logits depend on {feature}", e > 1e-3, f"max rel change {e:.1e}")

    # The torch module in float64 against the loop forward (vectorised vs loops, same precision).
    m64 = model_from(p, cfg, torch.float64)
    logits64, losses64, _ = m64(torch.from_numpy(inputs), torch.from_numpy(targets))
    err = max_rel(logits64.detach().numpy(), loop_logits)
    check("vectorised float64 module vs loop forward", err < 1e-10, f"max rel err {err:.1e}")
    e = abs(losses64["aux"].item() - aux)
    check("load_balancing_loss vs numpy definition (float64)", e < 1e-12, f"diff {e:.1e}")

    # Gradients: float64 autograd vs stored fp32; finite differences vs float64 autograd.
    m64.zero_grad()
    losses64["total"].backward()
    worst_name, worst = "", 0.0
    for n, prm in m64.named_parameters():
        e = max_rel(ref["grad." + n], prm.grad.numpy())
        if e > worst:
            worst_name, worst = n, e
    # The generator computes in float64 and stores float32: only that rounding may differ.
    check("every stored gradient vs float64 autograd", worst < 1e-6,
          f"worst max rel err {worst:.1e} ({worst_name})")
    probes = [("model.layers.0.self_attn.sinks", (3,)),
              ("model.layers.1.self_attn.q_proj.bias", (17,)),
              ("model.layers.2.self_attn.k_proj.weight", (5, 9)),
              ("model.layers.0.mlp.router.weight", (2, 11)),
              ("model.layers.1.mlp.router.bias", (4,)),
              ("model.layers.2.mlp.experts.gate_up_proj", (1, 7, 12)),
              ("model.layers.0.mlp.experts.down_proj_bias", (3, 20)),
              ("model.layers.1.post_attention_layernorm.weight", (30,)),
              ("model.embed_tokens.weight", (int(inputs[0, 4]), 8)),
              ("lm_head.weight", (int(targets[1, 3]), 40))]
    params = dict(m64.named_parameters())
    h = 1e-6
    for n, where in probes:
        prm = params[n]
        with torch.no_grad():
            old = prm[where].item()
            prm[where] = old + h
            up = m64(torch.from_numpy(inputs), torch.from_numpy(targets))[1]["total"].item()
            prm[where] = old - h
            down = m64(torch.from_numpy(inputs), torch.from_numpy(targets))[1]["total"].item()
            prm[where] = old
        fd = (up - down) / (2 * h)
        auto = prm.grad[where].item()
        e = abs(fd - auto) / max(abs(auto), 1e-8)
        check(f"finite difference d loss / d {n}{list(where)}", e < 1e-5 and abs(auto) > 1e-8,
              f"fd {fd:.9e} autograd {auto:.9e}")

    # The MXFP4 checkpoint through its index.
    weight_map, qt = load_quantized_checkpoint(os.path.join(args.data_dir, "gpt_oss_reference"))
    check("index names every tensor of the shards", set(weight_map) == set(qt))
    expert_ok = all(n.endswith(("_blocks", "_scales")) == (qt[n].dtype == np.uint8 if not isinstance(qt[n], Bf16) else False)
                    for n in qt)
    E, I, C = cfg.num_local_experts, cfg.intermediate_size, cfg.hidden_size
    shapes_ok = (qt["model.layers.0.mlp.experts.gate_up_proj_blocks"].shape == (E, 2 * I, C // 32, 16)
                 and qt["model.layers.0.mlp.experts.gate_up_proj_scales"].shape == (E, 2 * I, C // 32)
                 and qt["model.layers.0.mlp.experts.down_proj_blocks"].shape == (E, C, I // 32, 16)
                 and qt["model.layers.0.mlp.experts.down_proj_scales"].shape == (E, C, I // 32)
                 and qt["model.layers.0.mlp.experts.gate_up_proj_bias"].shape == (E, 2 * I))
    check("MXFP4 checkpoint: experts as uint8 blocks/scales in the published shapes, the rest bf16",
          expert_ok and shapes_ok)
    qstate = dequantized_state(qt)
    down0 = "model.layers.0.mlp.experts.down_proj"
    check("mxfp4.decoded tensor matches the shards", np.array_equal(
        qstate[down0].numpy(), ref["mxfp4.decoded." + down0]))
    # Every decoded weight is within half a step of the fp32 weight it encodes: bf16 keeps 8
    # significant bits; an MXFP4 value's largest half-step (between 4 and 6) is its block's 2^e.
    ok = True
    for n, t in qstate.items():
        diff = np.abs(t.numpy().astype(np.float64) - p[n])
        if n.endswith(("gate_up_proj", "down_proj")):
            scales = qt[n + "_scales"].astype(np.float64) - 127  # [E, out, in/32]
            bound = np.repeat(2.0 ** scales, 32, axis=-1).transpose(0, 2, 1)  # [E, in, out]
        else:
            bound = np.abs(p[n]) * 2.0 ** -8
        ok &= bool(np.all(diff <= bound))
    check("decoded weights lie within half a step of the fp32 weights", ok)
    qm = model_from({n: t.numpy() for n, t in qstate.items()}, cfg).double()
    with torch.no_grad():
        qlogits = qm(torch.from_numpy(inputs))[0].numpy()
    check("mxfp4.logits from the shards", max_rel(ref["mxfp4.logits"], qlogits) < 1e-6,
          f"max rel err {max_rel(ref['mxfp4.logits'], qlogits):.1e}")

    # Greedy ids without the cache.
    m32 = model_from(p, cfg)
    prompt = ref["greedy.prompt"].tolist()
    n_new = len(ref["greedy.fp32"])
    for tag, model in (("fp32", m32), ("mxfp4", qm)):
        ids = full_recompute_greedy(model, prompt, n_new)
        check(f"greedy.{tag} recomputed without the KV cache", ids == ref[f"greedy.{tag}"].tolist())
    check("the greedy prompt is longer than the window and the run fits the context",
          len(prompt) > cfg.sliding_window and len(prompt) + n_new <= cfg.max_position_embeddings)

    print(f"{len(failures)} failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
