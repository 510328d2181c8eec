#!/usr/bin/env bash
# Throughput on a busy machine: gpt2-124m training and generation on the CPU, first on an idle
# machine, then beside CPU-burning processes (each a shell loop that never sleeps), in one
# invocation. Each is run as Switchyard runs by default (threads adapted to the free cores, see
# src/backend/cpu/thread_adapter.h) and, as the peer in the same run, with the thread count fixed
# at the machine's CPUs (OMP_NUM_THREADS, which turns the adaptation off): what the engine did before.
#
# Usage: bench/busy_machine.sh
# Environment (all optional):
#   SWITCHYARD_BIN  the CLI to measure                  (default: <repo>/build/switchyard)
#   BURNERS         competing CPU-bound processes       (default: 1)
#   REPEATS         runs of each case, the two policies alternating (the median is kept) (default: 5)
#   STEPS, TOKENS   timed training steps, generated tokens (default: 5, 64)
#
# Prints one line per case and, per workload, the busy/idle ratio of each policy. The target: busy
# keeps >= 40% of idle, and the default loses nothing on an idle machine (within 3%). Generation is
# bound by memory bandwidth, which on a shared host drifts by 10-20% from one run to the next, so
# its cases also give the median fraction of the weight-streaming bound that each run measured in
# the same process (bench generate probes the bandwidth just before it generates): on an idle
# machine that is the fairer comparison of the two policies.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SWITCHYARD_BIN:-$root/build/switchyard}"
burners="${BURNERS:-1}" repeats="${REPEATS:-5}" steps="${STEPS:-5}" tokens="${TOKENS:-64}"
[[ -x "$bin" ]] || { echo "error: $bin not found (build it, or set SWITCHYARD_BIN)" >&2; exit 1; }

burner_pids=()
stop_burners() {
  for pid in "${burner_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${burner_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  burner_pids=()
}
trap stop_burners EXIT
start_burners() {
  for ((i = 0; i < burners; ++i)); do
    sh -c 'while :; do :; done' &
    burner_pids+=("$!")
  done
  sleep 1  # let the scheduler settle the burners in
}

# run_once WORKLOAD POLICY: tokens/s of one run. POLICY is "switchyard" (the default) or "fixed"
# (every CPU, always).
run_once() {
  local workload="$1" policy="$2" env=(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u OMP_NUM_THREADS)
  [[ "$policy" == fixed ]] && env+=("OMP_NUM_THREADS=$(nproc)")
  local cmd
  if [[ "$workload" == train ]]; then
    cmd=("$bin" bench train --model gpt2-124m --batch 4 --seq 64 --steps "$steps" --warmup 1 --json)
  else
    cmd=("$bin" bench generate --model gpt2-124m --tokens "$tokens" --json)
  fi
  "${env[@]}" "${cmd[@]}" 2>/dev/null | tail -n 1 |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print(str(d["tokens_per_s"]) + ":" + str(d.get("fraction_of_bound", 0)))'
}

# median_pair WORKLOAD: "switchyard_median fixed_median switchyard_fraction fixed_fraction" (tokens/s,
# and for generation the fraction of the bound) over REPEATS runs of each, alternating, so
# that a drift of the machine (memory bandwidth on a shared host varies by 20% from minute to
# minute) reaches both policies alike.
median_pair() {
  local a=() b=()
  for ((r = 0; r < repeats; ++r)); do
    a+=("$(run_once "$1" switchyard)")
    b+=("$(run_once "$1" fixed)")
  done
  python3 - "$repeats" "${a[@]}" "${b[@]}" <<'PY'
import statistics as s, sys
n = int(sys.argv[1])
runs = [tuple(map(float, r.split(":"))) for r in sys.argv[2:]]
a, b = runs[:n], runs[n:]
print(s.median(r[0] for r in a), s.median(r[0] for r in b), s.median(r[1] for r in a), s.median(r[1] for r in b))
PY
}

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs"
"$bin" devices | grep '^cpu '
declare -A result fraction
for load in idle busy; do
  [[ "$load" == busy ]] && start_burners
  for workload in train generate; do
    read -r result[$workload.switchyard.$load] result[$workload.fixed.$load] \
      fraction[$workload.switchyard.$load] fraction[$workload.fixed.$load] < <(median_pair "$workload")
    for policy in switchyard fixed; do
      printf '%-8s %-9s %-10s %10.1f tokens/s' "$load" "$workload" "$policy" \
        "${result[$workload.$policy.$load]}"
      [[ "$workload" == generate ]] &&
        printf ', %.1f%% of the weight-streaming bound' "$(python3 -c "print(100 * ${fraction[$workload.$policy.$load]})")"
      echo
    done
  done
  stop_burners
done
for workload in train generate; do
  python3 - "$workload" "${result[$workload.switchyard.idle]}" "${result[$workload.switchyard.busy]}" \
    "${result[$workload.fixed.idle]}" "${result[$workload.fixed.busy]}" "$burners" \
    "${fraction[$workload.switchyard.idle]}" "${fraction[$workload.fixed.idle]}" <<'PY'
import sys
w, si, sb, pi, pb, n = sys.argv[1], *map(float, sys.argv[2:6]), sys.argv[6]
fs, fp = map(float, sys.argv[7:9])
line = (f"{w}: with {n} burner(s) switchyard keeps {100 * sb / si:.0f}% of idle, fixed threads "
        f"{100 * pb / pi:.0f}%; idle switchyard / fixed = {si / pi:.3f}")
if fp > 0:
    line += f" (fraction of the bound {fs / fp:.3f})"
print(line + f"; busy switchyard / fixed = {sb / pb:.2f}x")
PY
done
