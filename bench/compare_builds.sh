#!/usr/bin/env bash
# Two builds of Switchyard side by side on the same machine, in one invocation: gpt2-124m CPU
# training and generation (the shapes of bench/compare_cpu.sh) and, optionally, the simulated
# trn2-sim step (the shapes of bench/compare_sim.sh). For checking that a change made nothing
# slower: keep the binary from before the change (cp build/switchyard /somewhere/old) and compare.
#
# Usage: bench/compare_builds.sh OLD_BINARY NEW_BINARY
# Environment (all optional):
#   REPEATS  runs of each case, the two binaries alternating (the median is kept)  (default: 3)
#   STEPS    timed training steps, after 1 warmup                                    (default: 5)
#   TOKENS   generated tokens                                                         (default: 64)
#   SIM      1 to also time one trn2-sim training step per run                        (default: 0)
#   PREFILL  1 to also time a 512-token prompt in one pass (bench prefill)           (default: 0)
#
# Prints, per case, both medians and new / old. Generation also gives the median fraction of the
# weight-streaming bound, which bench generate measures in the same process (the host's memory
# bandwidth drifts between runs).
set -euo pipefail

[[ $# -eq 2 ]] || { echo "usage: $0 OLD_BINARY NEW_BINARY" >&2; exit 2; }
old="$1" new="$2"
for b in "$old" "$new"; do
  [[ -x "$b" ]] || { echo "error: '$b' is not an executable" >&2; exit 1; }
done
repeats="${REPEATS:-3}" steps="${STEPS:-5}" tokens="${TOKENS:-64}" sim="${SIM:-0}" prefill="${PREFILL:-0}"

# measure BINARY CASE: the case's last stdout line (a JSON object) reduced to "value[:fraction]".
measure() {
  local bin="$1" case="$2" cmd
  case "$case" in
    train) cmd=("$bin" bench train --model gpt2-124m --batch 4 --seq 64 --steps "$steps" --warmup 1 --json) ;;
    generate) cmd=("$bin" bench generate --model gpt2-124m --tokens "$tokens" --json) ;;
    sim) cmd=("$bin" bench train --model gpt2-124m --device trn2-sim --batch 4 --seq 64 --steps 1 --warmup 1 --json) ;;
    prefill) cmd=("$bin" bench prefill --model gpt2-124m --tokens 512 --repeats 3 --json) ;;
  esac
  "${cmd[@]}" 2>/dev/null | grep -v '^[[:space:]]*$' | tail -n 1 | python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
case = sys.argv[1]
if case == "train":
    print(d["tokens_per_s"])
elif case == "generate":
    print(str(d["tokens_per_s"]) + ":" + str(d["fraction_of_bound"]))
elif case == "prefill":
    print(d["tokens_per_s"])
else:
    print(str(d["ms_per_step"]) + ":" + str(d.get("simulated_ms_per_step", 0)))
' "$case"
}

echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs"
echo "old: $old"
echo "new: $new"
cases=(train generate)
[[ "$sim" == 1 ]] && cases+=(sim)
[[ "$prefill" == 1 ]] && cases+=(prefill)
for c in "${cases[@]}"; do
  a=() b=()
  for ((r = 0; r < repeats; ++r)); do
    a+=("$(measure "$old" "$c")")
    b+=("$(measure "$new" "$c")")
  done
  python3 - "$c" "$repeats" "${a[@]}" "${b[@]}" <<'PY'
import statistics as s, sys
case, n = sys.argv[1], int(sys.argv[2])
runs = [tuple(map(float, r.split(":"))) for r in sys.argv[3:]]
old, new = runs[:n], runs[n:]
med = lambda rs, i: s.median(r[i] for r in rs)
if case == "train":
    print(f"train     old {med(old, 0):8.1f} tokens/s  new {med(new, 0):8.1f} tokens/s  new/old {med(new, 0) / med(old, 0):.3f}"
          f"   (runs old {[r[0] for r in old]}, new {[r[0] for r in new]})")
elif case == "prefill":
    print(f"prefill   old {med(old, 0):8.1f} tokens/s  new {med(new, 0):8.1f} tokens/s  new/old {med(new, 0) / med(old, 0):.3f}"
          f"   (runs old {[r[0] for r in old]}, new {[r[0] for r in new]})")
elif case == "generate":
    print(f"generate  old {med(old, 0):8.1f} tokens/s ({100 * med(old, 1):.1f}% of bound)  new {med(new, 0):8.1f} tokens/s "
          f"({100 * med(new, 1):.1f}% of bound)  new/old {med(new, 0) / med(old, 0):.3f}, bound fractions {med(new, 1) / med(old, 1):.3f}")
else:
    print(f"trn2-sim  old {med(old, 0):8.1f} ms wall, {med(old, 1):.3f} ms simulated  new {med(new, 0):8.1f} ms wall, "
          f"{med(new, 1):.3f} ms simulated  wall new/old {med(new, 0) / med(old, 0):.3f}, simulated new/old {med(new, 1) / med(old, 1):.4f}")
PY
done
