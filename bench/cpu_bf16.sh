#!/usr/bin/env bash
# bf16 against fp32 on the CPU (issue 18), in the same run: `bench train` of gpt2-124m at each
# shape and `bench generate` at batch 1, in --dtype fp32 and --dtype bf16 on the CPU, alternating the two
# RUNS times. Prints each run's figures (ms/step, GEMM rate and bound, peak RSS; tokens/s and the
# weight-streaming bound) and the bf16 / fp32 ratio of each pair.
# Usage: bench/cpu_bf16.sh [RUNS] [SHAPES...]   (shapes as BxT; default 4x64 8x256)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
shift || true
shapes=("$@")
[ ${#shapes[@]} -eq 0 ] && shapes=(4x64 8x256)
bin=build/switchyard

last_json() { grep '^{' | tail -1; }

lscpu | grep -E "Model name|^CPU\(s\)"
grep -o -w 'amx_bf16\|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
"$bin" devices | grep -E '^cpu'

for shape in "${shapes[@]}"; do
  b=${shape%x*} t=${shape#*x}
  echo "== bench train --model gpt2-124m --batch $b --seq $t --steps 5 --warmup 1"
  for i in $(seq "$runs"); do
    fp32=$("$bin" bench train --model gpt2-124m --batch "$b" --seq "$t" --steps 5 --json --dtype fp32 | last_json)
    bf16=$("$bin" bench train --model gpt2-124m --batch "$b" --seq "$t" --steps 5 --json --dtype bf16 | last_json)
    python3 - "$fp32" "$bf16" <<'PY'
import json, sys
f, b = (json.loads(a) for a in sys.argv[1:])
for name, r in (("fp32", f), ("bf16", b)):
    print(f"  {name}: {r['ms_per_step']:.1f} ms/step, GEMM rate {r['gemm_gflops']:.0f} GFLOP/s, "
          f"bound {r['gemm_bound_ms']:.1f} ms ({r['ratio_to_gemm_bound']:.2f}x), peak RSS {r['peak_rss_mib']:.0f} MiB")
print(f"  bf16 speed-up {f['ms_per_step'] / b['ms_per_step']:.2f}x, GEMM rate {b['gemm_gflops'] / f['gemm_gflops']:.2f}x, "
      f"peak RSS {b['peak_rss_mib'] / f['peak_rss_mib']:.3f}x")
PY
  done
done

echo "== bench generate --model gpt2-124m --tokens 64 (batch 1)"
for i in $(seq "$runs"); do
  fp32=$("$bin" bench generate --model gpt2-124m --tokens 64 --json --dtype fp32 | last_json)
  bf16=$("$bin" bench generate --model gpt2-124m --tokens 64 --json --dtype bf16 | last_json)
  python3 - "$fp32" "$bf16" <<'PY'
import json, sys
f, b = (json.loads(a) for a in sys.argv[1:])
for name, r in (("fp32", f), ("bf16", b)):
    print(f"  {name}: {r['tokens_per_s']:.1f} tokens/s ({r['ms_per_token']:.2f} ms/token), weights read "
          f"{r['weight_bytes'] / 1e6:.0f} MB/token at {r['read_bandwidth_gbs']:.1f} GB/s: bound "
          f"{r['bound_tokens_per_s']:.1f} tokens/s, {100 * r['fraction_of_bound']:.0f}% of it; peak RSS {r['peak_rss_mib']:.0f} MiB")
print(f"  bf16 / fp32 tokens/s {b['tokens_per_s'] / f['tokens_per_s']:.2f}x")
PY
done
