#!/usr/bin/env bash
# The simulator's own speed: wall time to simulate one gpt2-124m training step (batch 4, sequence
# 64) on trn2-sim and trn1-sim, against the CPU backend's fp32 step on the same machine, in one
# invocation; also the simulated step of each target and, with TRACE_DIR, its Chrome trace.
#
# Usage: bench/compare_sim.sh
# Environment (all optional):
#   SWITCHYARD_BIN  the CLI to measure                      (default: <repo>/build/switchyard)
#   STEPS           timed steps per device (after 1 warmup) (default: 3)
#   MODEL           model preset                            (default: gpt2-124m)
#   TRACE_DIR       write <target>_step.json traces there   (default: none)
#
# Prints the date, the CPU, each device's JSON result, and the ratios of simulation wall time per
# step to the CPU step. Exits non-zero if any run fails or prints no JSON result.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SWITCHYARD_BIN:-$root/build/switchyard}"
steps="${STEPS:-3}"
model="${MODEL:-gpt2-124m}"
if [[ ! -x "$bin" ]]; then
  echo "error: Switchyard binary '$bin' not found or not executable (build it, or set SWITCHYARD_BIN)" >&2
  exit 1
fi

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu:  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores"

declare -A wall
for device in cpu trn2-sim trn1-sim; do
  cmd=("$bin" bench train --model "$model" --device "$device" --batch 4 --seq 64 --steps "$steps"
       --warmup 1 --json)
  if [[ -n "${TRACE_DIR:-}" && "$device" != cpu ]]; then
    mkdir -p "$TRACE_DIR"
    cmd+=(--trace "$TRACE_DIR/${device%-sim}_step.json")
  fi
  echo "command: ${cmd[*]}"
  out="$("${cmd[@]}" 2>/dev/null | tail -n 1)"
  if [[ "$out" != "{"* ]]; then
    echo "error: '$device' printed no JSON result" >&2
    exit 1
  fi
  echo "$device: $out"
  wall[$device]="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ms_per_step"])' "$out")"
done

for device in trn2-sim trn1-sim; do
  python3 -c 'import sys; s, c = float(sys.argv[2]), float(sys.argv[3]); print(f"{sys.argv[1]}: {s:.0f} ms of wall time per simulated step = {s / c:.2f}x the cpu step ({c:.0f} ms)")' \
    "$device" "${wall[$device]}" "${wall[cpu]}"
done
