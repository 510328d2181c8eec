#!/usr/bin/env bash
# Throughput on a busy machine: gpt2-124m training and generation on the CPU, first on an idle
# machine, then beside CPU-burning processes (each a shell loop that never sleeps), in one
# invocation. Each is run under Switchyard's own choice of OpenMP waiting (the CLI's default) and
# under OpenMP's default spinning (GOMP_SPINCOUNT=300000, libgomp's default), the peer in the same run.
#
# Usage: bench/busy_machine.sh
# Environment (all optional):
#   SWITCHYARD_BIN  the CLI to measure                  (default: <repo>/build/switchyard)
#   BURNERS         competing CPU-bound processes       (default: 1)
#   REPEATS         runs of each case (best is kept)    (default: 2)
#   STEPS, TOKENS   timed training steps, generated tokens (default: 5, 32)
#
# Prints one line per case and, per workload, the busy/idle ratio of each policy. The target: busy
# keeps >= 40% of idle, and the default loses nothing on an idle machine (within 3%).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SWITCHYARD_BIN:-$root/build/switchyard}"
burners="${BURNERS:-1}" repeats="${REPEATS:-2}" steps="${STEPS:-5}" tokens="${TOKENS:-32}"
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

# tokens_per_s WORKLOAD POLICY: best tokens/s over REPEATS runs. POLICY is "switchyard" (the CLI's
# choice) or "spin" (libgomp's default spin count, as when nothing chooses).
tokens_per_s() {
  local workload="$1" policy="$2" best=0 env=(env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u SWITCHYARD_OPENMP_CONFIGURED)
  [[ "$policy" == spin ]] && env+=(GOMP_SPINCOUNT=300000)
  local cmd
  if [[ "$workload" == train ]]; then
    cmd=("$bin" bench train --model gpt2-124m --batch 4 --seq 64 --steps "$steps" --warmup 1 --json)
  else
    cmd=("$bin" bench generate --model gpt2-124m --tokens "$tokens" --json)
  fi
  for ((r = 0; r < repeats; ++r)); do
    local json value
    json="$("${env[@]}" "${cmd[@]}" 2>/dev/null | tail -n 1)"
    value="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["tokens_per_s"])' "$json")"
    best="$(python3 -c "print(max($best, $value))")"
  done
  echo "$best"
}

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs"
"$bin" devices | grep '^cpu '
declare -A result
for load in idle busy; do
  [[ "$load" == busy ]] && start_burners
  for workload in train generate; do
    for policy in switchyard spin; do
      result[$workload.$policy.$load]="$(tokens_per_s "$workload" "$policy")"
      printf '%-8s %-9s %-10s %10.1f tokens/s\n' "$load" "$workload" "$policy" \
        "${result[$workload.$policy.$load]}"
    done
  done
  stop_burners
done
for workload in train generate; do
  python3 - "$workload" "${result[$workload.switchyard.idle]}" "${result[$workload.switchyard.busy]}" \
    "${result[$workload.spin.idle]}" "${result[$workload.spin.busy]}" "$burners" <<'PY'
import sys
w, si, sb, pi, pb, n = sys.argv[1], *map(float, sys.argv[2:6]), sys.argv[6]
print(f"{w}: with {n} burner(s) switchyard keeps {100 * sb / si:.0f}% of idle, OpenMP's default spin "
      f"{100 * pb / pi:.0f}%; idle switchyard / spin = {si / pi:.3f}; busy switchyard / spin = {sb / pb:.2f}x")
PY
done
