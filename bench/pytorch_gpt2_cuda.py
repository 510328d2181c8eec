#!/usr/bin/env python3
"""PyTorch peer benchmark for Switchyard's CUDA backend: the same GPT-2 (tools/gpt2_torch.py) on
an NVIDIA GPU, set up as a strong user would run it.

Usage (with a CUDA build of PyTorch):
    bench/pytorch_gpt2_cuda.py train --preset gpt2-124m --batch 16 --seq 1024 --steps 20 --warmup 5
    bench/pytorch_gpt2_cuda.py generate --preset gpt2-124m --tokens 128

train: bf16 autocast, F.scaled_dot_product_attention (is_causal, flash kernels), torch.compile of
the model, fused AdamW (lr 6e-4, betas 0.9/0.95, eps 1e-8, weight decay 0.1 on matrices), random
tokens; each step after the warmup is timed with a device synchronisation. generate: batch 1, eager,
bf16 weights, KV cache (past keys/values concatenated per layer), greedy; ms_per_token is the mean
decode step after an untimed warmup run.

Progress goes to stderr; the result is ONE JSON line on stdout with impl, mode, ms_per_step or
ms_per_token, tokens_per_s, flops_per_step (the count Switchyard uses: 3 x forward, forward per token
= L * 24 C^2 + L * 4 C (T+1)/2 + 2 C V), tflops, peak_gpu_mib (torch.cuda.max_memory_allocated),
gpu, torch.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
import gpt2_torch  # noqa: E402


def progress(msg):
    print(msg, file=sys.stderr, flush=True)


def training_flops_per_token(cfg, seq):
    """Switchyard's ModelConfig::training_flops_per_token: causal attention counted at (T+1)/2."""
    C, L, V = cfg.n_embd, cfg.n_layer, cfg.vocab_size
    forward = L * 24 * C * C + L * 4 * C * (seq + 1) / 2 + 2 * C * V
    return 3 * forward


def bench_train(args):
    base = gpt2_torch.PRESETS[args.preset]
    cfg = gpt2_torch.GPT2Config(**{**base.__dict__, "sdpa": True})
    if args.seq > cfg.n_positions:
        sys.exit(f"error: --seq {args.seq} exceeds the preset's n_positions {cfg.n_positions}")
    device = torch.device("cuda")
    model = gpt2_torch.GPT2(cfg).to(device)
    model.train()
    opt = torch.optim.AdamW(gpt2_torch.adamw_param_groups(model, 0.1), lr=6e-4, betas=(0.9, 0.95),
                            eps=1e-8, fused=True)
    compiled = torch.compile(model) if not args.no_compile else model
    n_params = sum(p.numel() for p in model.parameters())
    progress(f"pytorch cuda train: {args.preset} ({n_params / 1e6:.1f}M params) batch {args.batch} "
             f"seq {args.seq}, {args.warmup} warmup + {args.steps} timed steps, "
             f"{'compiled' if not args.no_compile else 'eager'}")
    torch.cuda.reset_peak_memory_stats()
    times = []
    loss = None
    gen = torch.Generator(device=device).manual_seed(args.seed)
    for step in range(args.warmup + args.steps):
        x = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device=device, generator=gen)
        y = torch.randint(0, cfg.vocab_size, (args.batch, args.seq), device=device, generator=gen)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            _, loss, _ = compiled(x, y)
        loss.backward()
        opt.step()
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        warm = step < args.warmup
        if not warm:
            times.append(dt)
        progress(f"step {step + 1}/{args.warmup + args.steps}{' (warmup)' if warm else ''}: "
                 f"loss {loss.item():.4f}, {dt * 1e3:.1f} ms")
    s = statistics.median(times)
    tokens = args.batch * args.seq
    flops = training_flops_per_token(cfg, args.seq) * tokens
    return {"impl": "pytorch", "mode": "train", "preset": args.preset, "batch": args.batch,
            "seq": args.seq, "steps": args.steps, "warmup": args.warmup, "compiled": not args.no_compile,
            "ms_per_step": s * 1e3, "ms_per_step_min": min(times) * 1e3,
            "tokens_per_s": tokens / s, "flops_per_step": flops, "tflops": flops / s / 1e12,
            "final_loss": loss.item(), "params": n_params,
            "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20}


@torch.no_grad()
def decode(model, prompt, n_tokens, timed):
    logits, _, past = model(prompt)
    times = []
    for i in range(n_tokens):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        tok = logits[:, -1, :].argmax(dim=-1, keepdim=True)
        logits, _, past = model(tok, past=past)
        int(tok)  # the host needs the token, as a streaming generator does
        dt = time.perf_counter() - t0
        times.append(dt)
        if timed and (i + 1) % 32 == 0:
            progress(f"token {i + 1}/{n_tokens}: {dt * 1e3:.2f} ms")
    return times


def bench_generate(args):
    cfg = gpt2_torch.PRESETS[args.preset]
    if 1 + args.tokens > cfg.n_positions:
        sys.exit(f"error: --tokens {args.tokens} exceeds the preset's n_positions {cfg.n_positions}")
    device = torch.device("cuda")
    model = gpt2_torch.GPT2(cfg).to(device=device, dtype=torch.bfloat16)
    model.eval()
    prompt = torch.zeros((1, 1), dtype=torch.long, device=device)
    progress(f"pytorch cuda generate: {args.preset}, bf16 eager, {args.tokens} tokens (greedy)")
    decode(model, prompt, min(16, args.tokens), timed=False)
    times = decode(model, prompt, args.tokens, timed=True)
    s = statistics.mean(times)
    return {"impl": "pytorch", "mode": "generate", "preset": args.preset, "tokens": args.tokens,
            "dtype": "bf16", "ms_per_token": s * 1e3, "tokens_per_s": 1.0 / s,
            "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20}


def main():
    ap = argparse.ArgumentParser(description="PyTorch GPT-2 peer benchmark on an NVIDIA GPU.")
    sub = ap.add_subparsers(dest="mode", required=True)
    for mode in ("train", "generate"):
        p = sub.add_parser(mode)
        p.add_argument("--preset", choices=tuple(gpt2_torch.PRESETS), default="gpt2-124m")
        p.add_argument("--seed", type=int, default=0)
        if mode == "train":
            p.add_argument("--batch", type=int, default=16)
            p.add_argument("--seq", type=int, default=1024)
            p.add_argument("--steps", type=int, default=20)
            p.add_argument("--warmup", type=int, default=5)
            p.add_argument("--no-compile", action="store_true", help="eager instead of torch.compile")
        else:
            p.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()
    for name in ("batch", "seq", "steps", "tokens"):
        if getattr(args, name, 1) < 1:
            sys.exit(f"error: --{name} must be at least 1")
    if not torch.cuda.is_available():
        sys.exit("error: this PyTorch sees no CUDA GPU")
    torch.manual_seed(args.seed)
    torch.backends.cuda.matmul.allow_tf32 = True
    result = bench_train(args) if args.mode == "train" else bench_generate(args)
    result["gpu"] = torch.cuda.get_device_name(0)
    result["torch"] = torch.__version__
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
