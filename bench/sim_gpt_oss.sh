#!/usr/bin/env bash
# Simulated gpt-oss serving figures on Trainium-class NeuronCores: decode steps at several batches
# and one prompt's prefill, timed on trn*-sim:timing (timing-only: no arithmetic) over the shard
# one core of a tensor-parallel group holds, with the group's all-reduces (bench generate and
# prefill --tensor-parallel; model/tensor_parallel_shard.h states the layout). Writes a step-time
# file per chip and model for `switchyard plan serve --step-times`, a Chrome trace of one decode
# step per run list entry, and a summary.
#
# Usage: bench/sim_gpt_oss.sh [OUT_DIR]        (default OUT_DIR: a new temporary directory)
# Environment (all optional):
#   SWITCHYARD_BIN  the CLI                                     (default: <repo>/build/switchyard)
#   RUNS            "model:target:degree:experts ..." to time    (default below; experts: the
#                   expert weights' format, mxfp4 as published or bf16)
#   BATCHES         decode batches                              (default: "1 8 32 128")
#   CONTEXT         positions already cached when decoding      (default: 1024)
#   TOKENS          decode steps timed per batch                (default: 2)
#   PROMPT          prefill tokens                              (default: 2048)
#
# Degrees: the smallest that fits a core's HBM share (12 GiB on trn2, 16 GiB on trn1), dividing
# the 8 key-value heads. gpt-oss-20b (13 GB as published) needs 2 cores; gpt-oss-120b (65 GB)
# needs 8, a whole trn2 chip, and does not fit a trn1 chip (32 GiB). A chip of C cores runs C /
# degree groups side by side, so its step-time file lists batch x C / degree sequences per step.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SWITCHYARD_BIN:-$root/build/switchyard}"
runs="${RUNS:-gpt-oss-20b:trn2:2:mxfp4 gpt-oss-20b:trn2:4:bf16 gpt-oss-20b:trn1:2:mxfp4 gpt-oss-120b:trn2:8:mxfp4}"
batches="${BATCHES:-1 8 32 128}"
context="${CONTEXT:-1024}"
tokens="${TOKENS:-2}"
prompt="${PROMPT:-2048}"
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
[[ -x "$bin" ]] || { echo "error: '$bin' not found or not executable (build it, or set SWITCHYARD_BIN)" >&2; exit 1; }

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu:  $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores"
echo "out:  $out"

for run in $runs; do
  IFS=: read -r model target degree experts <<<"$run"
  experts="${experts:-mxfp4}"
  tag="${target}_${model}_tp${degree}_${experts}"
  : >"$out/$tag.jsonl"
  for batch in $batches; do
    cmd=("$bin" bench generate --model "$model" --device "$target-sim:timing" --tensor-parallel "$degree"
         --expert-weights "$experts" --batch "$batch" --tokens "$tokens" --start-at "$context" --json)
    [[ "$batch" == 1 || "$batch" == 32 ]] && cmd+=(--trace "$out/${tag}_b${batch}_decode_step.json")
    echo "+ ${cmd[*]}"
    start=$SECONDS
    "${cmd[@]}" | tee "$out/$tag.b$batch.txt"
    wall=$((SECONDS - start))
    tail -n1 "$out/$tag.b$batch.txt" | python3 -c 'import json,sys; j=json.load(sys.stdin); j["wall_s"]=float(sys.argv[1]); print(json.dumps(j))' "$wall" >>"$out/$tag.jsonl"
  done
  cmd=("$bin" bench prefill --model "$model" --device "$target-sim:timing" --tensor-parallel "$degree"
       --expert-weights "$experts" --tokens "$prompt" --repeats 1 --warmup 0 --json)
  echo "+ ${cmd[*]}"
  "${cmd[@]}" | tee "$out/$tag.prefill.txt"
  python3 - "$out/$tag.jsonl" "$out/$tag.prefill.txt" "$out/$tag.step_times.json" "$model" "$target" "$degree" "$context" "$experts" <<'PY'
import json, sys, datetime
steps_path, prefill_path, out_path, model, target, degree, context, experts = sys.argv[1:]
degree = int(degree)
rows = [json.loads(l) for l in open(steps_path) if l.strip()]
prefill = json.loads(open(prefill_path).read().strip().splitlines()[-1])
cores = rows[0]["cores_per_chip"]
groups = max(1, cores // degree)          # groups a chip runs side by side
chip_degree = max(1, degree // cores)     # chips one group spans
table = {"chip": target, "model": model, "kind": "simulated", "precision": experts,
         "source": f"{target}-sim:timing, bench generate --tensor-parallel {degree} --expert-weights {experts} --start-at {context} "
                   f"(one core's shard; {groups} groups of {degree} cores a chip)",
         "date": datetime.date.today().isoformat(), "tensor_parallel": chip_degree,
         "context": int(context),
         "steps": [{"batch": r["batch"] * groups, "ms": r["simulated_ms_per_step"]} for r in rows]}
json.dump(table, open(out_path, "w"), indent=1)
print(f"\n{model} on {target}, {experts} experts: tensor-parallel {degree} ({groups} groups a chip), context {context}")
print("batch  sim ms/step  tok/s/core  tok/s/chip  bound by         HBM GB/s  wall s/step")
for r in rows:
    print(f"{r['batch']:5d}  {r['simulated_ms_per_step']:11.3f}  {r['simulated_tokens_per_s_per_core']:10.1f}  "
          f"{r['simulated_tokens_per_s_per_chip']:10.1f}  {r['bottleneck']:15s}  {r['simulated_hbm_gbps']:8.1f}  "
          f"{r['ms_per_step'] / 1000:.1f} (whole run {r['wall_s']:.0f} s)")
print(f"prefill {prefill['tokens']} tokens: {prefill['simulated_ms']:.1f} ms simulated, "
      f"{prefill['simulated_tokens_per_s_per_core']:.0f} tokens/s per core, "
      f"{prefill['simulated_tokens_per_s_per_chip']:.0f} per chip, bound by {prefill['bottleneck']}")
print(f"step-time file: {out_path}")
PY
done
