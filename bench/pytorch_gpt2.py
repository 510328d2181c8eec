#!/usr/bin/python3
"""PyTorch peer benchmark for Switchyard: the same GPT-2 (tools/gpt2_torch.py), eager on CPU, in fp32
or (--autocast bf16) under torch.autocast's bf16 mixed precision.

Usage (with the Debian PyTorch at /usr/bin/python3):
    bench/pytorch_gpt2.py train --preset gpt2-124m|tiny --batch 4 --seq 64 --steps 5 --warmup 1 --threads 2 [--autocast bf16]
    bench/pytorch_gpt2.py generate --preset gpt2-124m --tokens 32 --threads 2 [--prompt 1] [--sample]

train: random tokens, forward + backward + AdamW step (lr 6e-4, betas 0.9/0.95, eps 1e-8, weight
decay 0.1 on matrices only); each step after the warmup steps is timed. generate: batch 1, KV cache
(past keys/values concatenated per layer), torch.no_grad(); the prompt is run once (prefill, timed
apart), then each of --tokens decode steps picks a token (greedy, or sampled with --sample) and feeds
it back; ms_per_token is the mean decode step.

A progress line per step goes to stderr; the result is ONE JSON line on stdout, e.g.
    {"impl":"pytorch","mode":"train","ms_per_step":..,"tokens_per_s":..,"gflops":..,"peak_rss_mib":..,...}
gflops is achieved model GFLOP/s from a matmul count (see model_flops_per_token), not a hardware figure.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

# torch and the model are imported in main(), after the thread count is known: OpenBLAS reads
# OPENBLAS_NUM_THREADS when it is loaded, and torch.set_num_threads does not reach it.
torch = None
GPT2 = PRESETS = adamw_param_groups = None
PRESET_NAMES = ("gpt2-124m", "tiny")


def import_torch(threads):
    global torch, GPT2, PRESETS, adamw_param_groups
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads))
    import torch as _torch
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
    import gpt2_torch
    torch = _torch
    GPT2, PRESETS, adamw_param_groups = gpt2_torch.GPT2, gpt2_torch.PRESETS, gpt2_torch.adamw_param_groups
    torch.set_num_threads(threads)


def blas_library():
    """Path of the BLAS that torch's matmul actually runs on (Debian's torch uses the system libblas,
    which may be the slow netlib reference BLAS or OpenBLAS, chosen by update-alternatives or
    LD_LIBRARY_PATH)."""
    a = torch.ones(8, 8)
    a @ a  # make sure the library is loaded
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                base = os.path.basename(path)
                if base.startswith(("libblas", "libopenblas", "libmkl_rt", "libblis")):
                    return os.path.realpath(path)
    except OSError:
        pass
    return "unknown"


def peak_rss_mib():
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def model_flops_per_token(cfg, context):
    """Forward FLOPs per token counted from the matmuls: 2 * (weights touched) for the 12*C^2 per
    layer of attention and MLP projections plus the V*C LM head, plus 4*context*C per layer for the
    attention scores and the weighted sum (a full context, as with a dense causal kernel)."""
    C, L = cfg.n_embd, cfg.n_layer
    return 2 * (12 * L * C * C + cfg.vocab_size * C) + 4 * L * context * C


def progress(msg):
    print(msg, file=sys.stderr, flush=True)


def autocast(args):
    """fp32: no autocast. bf16: PyTorch's CPU mixed precision (products in bf16 through oneDNN,
    master weights, optimizer and the ops autocast keeps fp32 in fp32)."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.autocast == "bf16")


def bench_train(args, cfg):
    if args.seq > cfg.n_positions:
        sys.exit(f"error: --seq {args.seq} exceeds the preset's n_positions {cfg.n_positions}")
    model = GPT2(cfg)
    model.train()
    opt = torch.optim.AdamW(adamw_param_groups(model, 0.1), lr=6e-4, betas=(0.9, 0.95), eps=1e-8)
    n_params = sum(p.numel() for p in model.parameters())
    progress(f"pytorch train: {args.preset} ({n_params / 1e6:.1f}M params) batch {args.batch} "
             f"seq {args.seq}, {args.warmup} warmup + {args.steps} timed steps, {args.threads} threads")
    times = []
    loss = None
    for step in range(args.warmup + args.steps):
        x = torch.randint(0, cfg.vocab_size, (args.batch, args.seq))
        y = torch.randint(0, cfg.vocab_size, (args.batch, args.seq))
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast(args):  # the forward and loss; backward runs in the dtypes they chose
            _, loss, _ = model(x, y)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        warm = step < args.warmup
        if not warm:
            times.append(dt)
        progress(f"step {step + 1}/{args.warmup + args.steps}{' (warmup)' if warm else ''}: "
                 f"loss {loss.item():.4f}, {dt * 1e3:.1f} ms")
    s = statistics.mean(times)
    tokens = args.batch * args.seq
    flops = 3 * model_flops_per_token(cfg, args.seq) * tokens  # backward ~ 2x forward
    return {"impl": "pytorch", "mode": "train", "preset": args.preset, "batch": args.batch,
            "seq": args.seq, "steps": args.steps, "warmup": args.warmup,
            "ms_per_step": s * 1e3, "ms_per_step_min": min(times) * 1e3,
            "tokens_per_s": tokens / s, "gflops": flops / s / 1e9, "final_loss": loss.item(),
            "params": n_params, "peak_rss_mib": peak_rss_mib(), "threads": args.threads,
            "autocast": args.autocast, "torch": torch.__version__}


def generate(model, prompt, n_tokens, sample, gen, timed):
    """Returns (prefill seconds, list of per-token decode seconds, generated ids)."""
    with torch.no_grad():
        return _generate(model, prompt, n_tokens, sample, gen, timed)


def _generate(model, prompt, n_tokens, sample, gen, timed):
    t0 = time.perf_counter()
    logits, _, past = model(prompt)
    prefill = time.perf_counter() - t0
    out = []
    times = []
    for i in range(n_tokens):
        t0 = time.perf_counter()
        last = logits[:, -1, :]
        if sample:
            tok = torch.multinomial(torch.softmax(last, dim=-1), 1, generator=gen)
        else:
            tok = last.argmax(dim=-1, keepdim=True)
        logits, _, past = model(tok, past=past)
        dt = time.perf_counter() - t0
        times.append(dt)
        out.append(int(tok))
        if timed:
            progress(f"token {i + 1}/{n_tokens}: id {int(tok)}, {dt * 1e3:.1f} ms")
    return prefill, times, out


def bench_generate(args, cfg):
    if args.prompt < 1:
        sys.exit("error: --prompt must be at least 1 token")
    if args.prompt + args.tokens > cfg.n_positions:
        sys.exit(f"error: --prompt {args.prompt} + --tokens {args.tokens} exceeds the preset's "
                 f"n_positions {cfg.n_positions}")
    model = GPT2(cfg)
    model.eval()
    gen = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(0, cfg.vocab_size, (1, args.prompt), generator=gen)
    progress(f"pytorch generate: {args.preset}, prompt {args.prompt}, {args.tokens} tokens "
             f"({'sampled' if args.sample else 'greedy'}), {args.threads} threads")
    if args.warmup > 0:
        generate(model, prompt, min(args.warmup, args.tokens), args.sample, gen, timed=False)
    prefill, times, _ = generate(model, prompt, args.tokens, args.sample, gen, timed=True)
    s = statistics.mean(times)
    mean_context = args.prompt + (args.tokens + 1) / 2
    flops = model_flops_per_token(cfg, mean_context)
    return {"impl": "pytorch", "mode": "generate", "preset": args.preset, "prompt": args.prompt,
            "tokens": args.tokens, "sample": args.sample, "prefill_ms": prefill * 1e3,
            "ms_per_token": s * 1e3, "tokens_per_s": 1.0 / s, "gflops": flops / s / 1e9,
            "peak_rss_mib": peak_rss_mib(), "threads": args.threads, "torch": torch.__version__}


def main():
    ap = argparse.ArgumentParser(description="PyTorch GPT-2 peer benchmark (CPU, eager; fp32 or bf16 autocast).")
    sub = ap.add_subparsers(dest="mode", required=True)
    for mode in ("train", "generate"):
        p = sub.add_parser(mode)
        p.add_argument("--preset", choices=PRESET_NAMES, default="gpt2-124m")
        p.add_argument("--threads", type=int, default=os.cpu_count())
        p.add_argument("--seed", type=int, default=0)
        if mode == "train":
            p.add_argument("--batch", type=int, default=4)
            p.add_argument("--seq", type=int, default=64)
            p.add_argument("--steps", type=int, default=5)
            p.add_argument("--warmup", type=int, default=1)
            p.add_argument("--autocast", choices=("fp32", "bf16"), default="fp32",
                           help="bf16: train under torch.autocast('cpu', dtype=torch.bfloat16)")
        else:
            p.add_argument("--tokens", type=int, default=32)
            p.add_argument("--prompt", type=int, default=1, help="prompt length in (random) tokens")
            p.add_argument("--warmup", type=int, default=2, help="tokens of an untimed first run")
            p.add_argument("--sample", action="store_true", help="sample instead of greedy argmax")
    args = ap.parse_args()
    for name in ("threads", "batch", "seq", "steps", "tokens"):
        if getattr(args, name, 1) < 1:
            sys.exit(f"error: --{name} must be at least 1")
    if args.warmup < 0:
        sys.exit("error: --warmup must not be negative")

    import_torch(args.threads)
    torch.manual_seed(args.seed)
    cfg = PRESETS[args.preset]
    blas = blas_library()
    if "/blas/libblas" in blas:
        progress(f"warning: torch runs on the netlib reference BLAS ({blas}), many times slower than "
                 "OpenBLAS; see bench/README.md")
    result = bench_train(args, cfg) if args.mode == "train" else bench_generate(args, cfg)
    result["blas"] = blas
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
