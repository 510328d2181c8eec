#!/usr/bin/env bash
# The cost of data parallelism on this machine: gpt2-124m trained by one process (OpenMP over every
# core) against `mpirun -np 2` (one rank per core, ZeRO-1, the same global batch), alternating the
# two RUNS times. Prints the median step time of each run (its first step left out) and the ratio.
# Usage: bench/data_parallel_cpu.sh [RUNS] [BATCH] [SEQ] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3} batch=${2:-4} seq=${3:-64} steps=${4:-6}
bin=build/switchyard
corpus=../shared/data/tinyshakespeare.txt
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Medians over every step but the first of a run's log.jsonl: "ms", and where the run had ranks
# the communication the step spent ("comm_ms") and waited for ("comm_exposed_ms").
median_ms() {
  python3 -c '
import json, statistics, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if "\"loss\"" in l][1:]
line = "%.1f ms" % statistics.median(s["ms"] for s in steps)
if "comm_ms" in steps[0]:
    line += " (communication %.1f ms, %.1f ms of it exposed)" % (
        statistics.median(s["comm_ms"] for s in steps), statistics.median(s["comm_exposed_ms"] for s in steps))
print(line)' "$1/log.jsonl"
}

train() {  # train LAUNCHER... : runs one training into a fresh directory, prints its median ms
  local out="$work/run$RANDOM"
  "$@" "$bin" train --model gpt2-124m --tokenizer gpt2 --data "$corpus" --out "$out" \
    --batch "$batch" --seq "$seq" --steps "$steps" --checkpoint-minutes 0 --log-every 1000 \
    > "$out.txt" 2>&1 || { cat "$out.txt" >&2; exit 1; }
  median_ms "$out"
}

lscpu | grep -E "Model name|^CPU\(s\)"
echo "gpt2-124m, global batch $batch x $seq, $steps steps; median ms/step (first step excluded)"
for i in $(seq "$runs"); do
  one=$(train env)
  two=$(train mpirun --allow-run-as-root -np 2)
  echo "pair $i: one process ${one}, two ranks ${two}, ratio $(python3 -c "print(f'{${one%% *}/${two%% *}:.3f}')") (one / two)"
done
