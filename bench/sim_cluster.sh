#!/usr/bin/env bash
# Simulated NeuronCore clusters (issue 17): a gpt2-124m ZeRO-1 data-parallel training step on N
# simulated cores (`bench train --cores N`, timing-only simulator), weak scaling at a fixed batch per
# core: trn2 at 1, 8 (one chip), 64, 128 (one trn2.48xlarge: 64 logical cores at LNC=2) and 256
# cores; trn1 at 1, 2 (one chip), 32 (one trn1.32xlarge) and 64. Then a trace of a small cluster
# step (collectives on their own track) into bench/results.
#
# Usage: bench/sim_cluster.sh
# Environment (all optional):
#   SWITCHYARD_BIN  the CLI                       (default: <repo>/build/switchyard)
#   PER_CORE        sequences per core            (default: 4)
#   SEQ             tokens per sequence           (default: 1024)
#   OUT             where the JSON lines go       (default: a temporary directory)
#
# Prints a Markdown table: simulated ms per step, tokens/s per core, per chip, per instance and in
# all, scaling efficiency (the single core's step over the cluster core's, same batch per core), and
# the collectives' share of the step (all of them, and the part the backward pass does not hide).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SWITCHYARD_BIN:-$root/build/switchyard}"
per_core="${PER_CORE:-4}" seq="${SEQ:-1024}"
out="${OUT:-$(mktemp -d)}"
[[ -x "$bin" ]] || { echo "error: $bin not found (build it, or set SWITCHYARD_BIN)" >&2; exit 1; }
mkdir -p "$out"

run() {  # target cores
  local target=$1 cores=$2
  "$bin" bench train --model gpt2-124m --device "$target-sim:timing" --seq "$seq" \
    --batch $((per_core * cores)) --cores "$cores" --warmup 1 --steps 1 --json \
    > "$out/$target-$cores.txt" 2>&1
  tail -n 1 "$out/$target-$cores.txt"
}

echo "| chip | cores | chips | instances | sim ms/step | tokens/s per core | per chip | per instance | in all | scaling efficiency | collectives / step | exposed / step |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for spec in trn2:1 trn2:8 trn2:64 trn2:128 trn2:256 trn1:1 trn1:2 trn1:32 trn1:64; do
  run "${spec%%:*}" "${spec##*:}" | python3 -c '
import json, sys
j = json.loads(sys.stdin.read())
print("| {} | {} | {} | {} | {:.2f} | {:,.0f} | {:,.0f} | {:,.0f} | {:,.0f} | {:.1f}% | {:.1f}% | {:.1f}% |".format(
    j["device"].split("-")[0], j["cores"], j["chips"], j["instances"], j["simulated_ms_per_step"],
    j["simulated_tokens_per_s_per_core"], j["simulated_tokens_per_s_per_core"] * j["cores_per_chip_used"],
    j["simulated_tokens_per_s_per_instance"], j["simulated_cluster_tokens_per_s"],
    100 * j["scaling_efficiency"], 100 * j["collective_share"], 100 * j["exposed_collective_share"]))'
done
echo "JSON lines: $out"

# A trace small enough to keep: 2 layers of gpt2-124m, 8 x 128 tokens a core, 8 cores of a trn2 chip.
trace="$root/bench/results/trn2_gpt2-124m_2layers_8cores_step.json"
"$bin" bench train --model gpt2-124m --n-layer 2 --device trn2-sim:timing --seq 128 --batch 64 \
  --cores 8 --warmup 1 --steps 1 --trace "$trace" > "$out/trace.txt" 2>&1
gzip -f "$trace"
echo "trace: $trace.gz"
