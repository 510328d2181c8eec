#!/usr/bin/env bash
# Side-by-side CPU benchmark: Switchyard against PyTorch (eager, bench/pytorch_gpt2.py) on the same
# machine, same model (GPT-2 124M), same shapes and the same thread count, in one invocation; in
# fp32 and in bf16 mixed precision (Switchyard --dtype bf16 against PyTorch under bf16 autocast).
#
# Usage: bench/compare_cpu.sh
# Environment (all optional):
#   SWITCHYARD_BIN  the CLI to measure                      (default: <repo>/build/switchyard)
#   TORCH_PYTHON    a Python with PyTorch                    (default: /usr/bin/python3)
#   THREADS         threads for both                         (default: nproc)
#   STEPS           timed training steps (after 1 warmup)    (default: 5)
#   TOKENS          generated tokens                         (default: 32)
#   SHAPES          training shapes, BxT                     (default: "4x64 8x256")
#   DTYPES          precisions                               (default: "fp32 bf16")
#   TORCH_BLAS_DIR  folder holding an OpenBLAS libblas.so.3, put first on LD_LIBRARY_PATH for the
#                   PyTorch runs only (Debian's torch uses the system libblas; see bench/README.md)
#
# Prints the date, the CPU and its bf16 units, a table of tokens/s, ms, peak RSS and the ratio
# switchyard over pytorch for each shape and precision and for generation (against PyTorch's fp32),
# Switchyard's and PyTorch's bf16 over fp32, the raw results and the exact commands. Exits non-zero
# if any run fails or its last stdout line is not a JSON object with a numeric tokens_per_s.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SWITCHYARD_BIN:-$root/build/switchyard}"
torch_python="${TORCH_PYTHON:-/usr/bin/python3}"
threads="${THREADS:-$(nproc)}"
steps="${STEPS:-5}"
tokens="${TOKENS:-32}"

if [[ ! -x "$bin" ]]; then
  echo "error: Switchyard binary '$bin' not found or not executable (build it, or set SWITCHYARD_BIN)" >&2
  exit 1
fi
if ! "$torch_python" -c 'import torch' 2>/dev/null; then
  echo "error: '$torch_python' cannot import torch (set TORCH_PYTHON to a Python with PyTorch)" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

torch_env=(env "OMP_NUM_THREADS=$threads" "OPENBLAS_NUM_THREADS=$threads")
if [[ -n "${TORCH_BLAS_DIR:-}" ]]; then
  torch_env+=("LD_LIBRARY_PATH=$TORCH_BLAS_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}")
fi

shapes=(${SHAPES:-4x64 8x256})
dtypes=(${DTYPES:-fp32 bf16})

# Each run: a name that says what the summary compares, and its command.
names=()
declare -A commands
quote() { local out="" a; for a in "$@"; do out+="$(printf '%q' "$a") "; done; echo "${out% }"; }
add_run() { local name="$1"; shift; names+=("$name"); commands[$name]="$(quote "$@")"; }
for shape in "${shapes[@]}"; do
  b=${shape%x*} t=${shape#*x}
  for dtype in "${dtypes[@]}"; do
    add_run "switchyard_train_${dtype}_${shape}" env "OMP_NUM_THREADS=$threads" "$bin" bench train \
      --model gpt2-124m --dtype "$dtype" --batch "$b" --seq "$t" --steps "$steps" --warmup 1 --json
    add_run "pytorch_train_${dtype}_${shape}" "${torch_env[@]}" "$torch_python" "$root/bench/pytorch_gpt2.py" \
      train --preset gpt2-124m --autocast "$dtype" --batch "$b" --seq "$t" --steps "$steps" --warmup 1 \
      --threads "$threads"
  done
done
for dtype in "${dtypes[@]}"; do
  add_run "switchyard_generate_${dtype}" env "OMP_NUM_THREADS=$threads" "$bin" bench generate \
    --model gpt2-124m --dtype "$dtype" --tokens "$tokens" --json
done
add_run pytorch_generate_fp32 "${torch_env[@]}" "$torch_python" "$root/bench/pytorch_gpt2.py" generate \
  --preset gpt2-124m --tokens "$tokens" --threads "$threads"

# run NAME CMD...: runs CMD (progress on stderr goes to the terminal), keeps the last non-empty
# stdout line in $work/NAME.json.
run() {
  local name="$1"; shift
  echo "== $name: $*" >&2
  if ! "$@" > "$work/$name.out"; then
    echo "error: $name failed: $*" >&2
    exit 1
  fi
  grep -v '^[[:space:]]*$' "$work/$name.out" | tail -n 1 > "$work/$name.json" || true
  # Fail now, not after the long PyTorch runs, if the output is not what the comparison needs.
  python3 -c '
import json, sys
line = open(sys.argv[1]).read().strip()
try:
    obj = json.loads(line)
except ValueError:
    obj = None
if not isinstance(obj, dict) or not isinstance(obj.get("tokens_per_s"), (int, float)):
    sys.exit("error: %s: last stdout line is not a JSON object with a numeric tokens_per_s: %r"
             % (sys.argv[2], line[:200]))
' "$work/$name.json" "$name"
}

for name in "${names[@]}"; do eval "run $name ${commands[$name]}"; done

cpu="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
units="$(grep -o -w 'amx_bf16\|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
for name in "${names[@]}"; do echo "$name ${commands[$name]}"; done > "$work/commands.txt"
python3 - "$work" "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "${cpu:-unknown}" "${units:-none}" "$(nproc)" \
  "$threads" <<'EOF'
import json, os, sys

work, date, cpu, units, nproc, threads = sys.argv[1:7]
commands = [line.rstrip("\n").split(" ", 1) for line in open(os.path.join(work, "commands.txt"))]
res = {}
for name, _ in commands:
    with open(os.path.join(work, name + ".json")) as f:
        res[name] = json.loads(f.read().strip())  # run() checked: an object with tokens_per_s


def num(obj, key, fmt="{:.2f}"):
    v = obj.get(key)
    return fmt.format(v) if isinstance(v, (int, float)) else "-"


def ratio(a, b):
    return f"{res[a]['tokens_per_s'] / res[b]['tokens_per_s']:.2f}" if a in res and b in res else "-"


def peer_of(name):
    """PyTorch's run of the same shape and precision (generation: PyTorch's fp32)."""
    peer = name.replace("switchyard", "pytorch")
    return peer if peer in res else peer.replace("_bf16", "_fp32")


torch_run = next(r for n, r in res.items() if n.startswith("pytorch"))
print(f"date:    {date}")
print(f"machine: {cpu}, {nproc} CPUs online; {threads} threads for both; bf16 units: {units}")
print(f"pytorch: torch {torch_run.get('torch', '?')}, BLAS {torch_run.get('blas', '?')}")
print()
print(f"{'tokens/s':24}{'switchyard':>12}{'pytorch':>12}{'sy/pt':>8}{'sy ms':>10}{'pt ms':>10}"
      f"{'sy RSS':>9}{'pt RSS':>9}")
for name, _ in commands:
    if not name.startswith("switchyard"):
        continue
    peer = peer_of(name)
    sy, pt = res[name], res.get(peer, {})
    ms = "ms_per_step" if "train" in name else "ms_per_token"
    print(f"{name[len('switchyard_'):].replace('_', ' '):24}{sy['tokens_per_s']:>12.1f}"
          f"{num(pt, 'tokens_per_s', '{:.1f}'):>12}{ratio(name, peer):>8}{num(sy, ms, '{:.1f}'):>10}"
          f"{num(pt, ms, '{:.1f}'):>10}{num(sy, 'peak_rss_mib', '{:.0f}'):>9}"
          f"{num(pt, 'peak_rss_mib', '{:.0f}'):>9}")
print()
print("bf16 over fp32, tokens/s:")
for name, _ in commands:
    if "_bf16" in name:
        print(f"  {name}: {ratio(name, name.replace('_bf16', '_fp32'))}x")
print()
print("raw results:")
for name, _ in commands:
    print(f"  {name}: {json.dumps(res[name])}")
print()
print("commands:")
for _, command in commands:
    print(f"  {command}")
EOF
