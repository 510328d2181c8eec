#!/usr/bin/env bash
# Switchyard's CUDA backend against PyTorch on the same GPU, in one invocation: training gpt2-124m
# (PyTorch: bf16 autocast, flash SDPA, torch.compile, fused AdamW; bench/pytorch_gpt2_cuda.py) and
# batch-1 generation with a KV cache (PyTorch eager, bf16).
#
# Usage: bench/compare_cuda.sh
# Environment (all optional):
#   SWITCHYARD_BIN  the CLI to measure          (default: <repo>/build/switchyard)
#   TORCH_PYTHON    a Python with CUDA PyTorch  (default: python3)
#   BATCH, SEQ      training shape              (default: 16, 1024)
#   STEPS, WARMUP   timed and untimed steps     (default: 20, 3)
#   TOKENS          generated tokens            (default: 128)
#   PEAK_TFLOPS     dense bf16 peak for MFU     (default: 989, the H100/H200 SXM datasheet figure)
#   DEVICE          Switchyard device           (default: cuda)
#
# Prints both results, the tokens/s ratios, model FLOPs utilisation of both (the FLOP count is
# Switchyard's: 3 x forward, forward per token = L 24 C^2 + L 4 C (T+1)/2 + 2 C V), and peak GPU
# memory of both. Exits non-zero if a run fails or prints no JSON result.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SWITCHYARD_BIN:-$root/build/switchyard}"
py="${TORCH_PYTHON:-python3}"
batch="${BATCH:-16}" seq="${SEQ:-1024}" steps="${STEPS:-20}" warmup="${WARMUP:-3}"
tokens="${TOKENS:-128}" peak="${PEAK_TFLOPS:-989}" device="${DEVICE:-cuda}"

last_json() {  # runs "$@", echoes its last stdout line if it is a JSON object
  local out
  out="$("$@" | tail -n 1)" || { echo "error: failed: $*" >&2; exit 1; }
  [[ "$out" == "{"* ]] || { echo "error: no JSON result from: $*" >&2; exit 1; }
  echo "$out"
}

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader || true
cmds=(
  "$bin bench train --model gpt2-124m --device $device --batch $batch --seq $seq --steps $steps --warmup $warmup --json"
  "$py $root/bench/pytorch_gpt2_cuda.py train --preset gpt2-124m --batch $batch --seq $seq --steps $steps --warmup $warmup"
  "$bin bench generate --model gpt2-124m --device $device --tokens $tokens --json"
  "$py $root/bench/pytorch_gpt2_cuda.py generate --preset gpt2-124m --tokens $tokens"
)
results=()
for c in "${cmds[@]}"; do
  echo "command: $c" >&2
  # shellcheck disable=SC2086
  results+=("$(last_json $c)")
done

"$py" - "$peak" "${results[@]}" <<'PY'
import json, sys
peak = float(sys.argv[1])
sy_t, pt_t, sy_g, pt_g = (json.loads(a) for a in sys.argv[2:6])
flops = sy_t["flops_per_step"]
def mfu(ms): return flops / (ms / 1e3) / (peak * 1e12)
print(f"training gpt2-124m, batch {sy_t['batch']} x seq {sy_t['seq']} ({flops / 1e12:.2f} TFLOP per step):")
print(f"  switchyard {sy_t['device']}: {sy_t['ms_per_step']:.2f} ms/step, {sy_t['tokens_per_s']:.0f} tokens/s, "
      f"MFU {100 * mfu(sy_t['ms_per_step']):.1f}% of {peak:.0f} TFLOPS, peak GPU {sy_t.get('peak_device_mib', float('nan')):.0f} MiB")
print(f"  pytorch (compiled): {pt_t['ms_per_step']:.2f} ms/step, {pt_t['tokens_per_s']:.0f} tokens/s, "
      f"MFU {100 * mfu(pt_t['ms_per_step']):.1f}%, peak GPU {pt_t['peak_gpu_mib']:.0f} MiB")
print(f"  ratio switchyard / pytorch tokens/s: {sy_t['tokens_per_s'] / pt_t['tokens_per_s']:.3f}")
print("generation gpt2-124m, batch 1:")
print(f"  switchyard: {sy_g['ms_per_token']:.3f} ms/token ({sy_g['tokens_per_s']:.0f} tokens/s); "
      f"pytorch eager bf16: {pt_g['ms_per_token']:.3f} ms/token ({pt_g['tokens_per_s']:.0f} tokens/s)")
print(f"  ratio switchyard / pytorch tokens/s: {sy_g['tokens_per_s'] / pt_g['tokens_per_s']:.3f}")
print("raw:", *sys.argv[2:6], sep="\n  ")
PY
