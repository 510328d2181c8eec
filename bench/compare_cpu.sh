#!/usr/bin/env bash
# Side-by-side CPU benchmark: Switchyard against PyTorch (eager fp32, bench/pytorch_gpt2.py) on the
# same machine, same model (GPT-2 124M), same shapes and the same thread count, in one invocation.
#
# Usage: bench/compare_cpu.sh
# Environment (all optional):
#   SWITCHYARD_BIN  the CLI to measure                      (default: <repo>/build/switchyard)
#   TORCH_PYTHON    a Python with PyTorch                    (default: /usr/bin/python3)
#   THREADS         threads for both                         (default: nproc)
#   STEPS           timed training steps (after 1 warmup)    (default: 5)
#   TOKENS          generated tokens                         (default: 32)
#   TORCH_BLAS_DIR  folder holding an OpenBLAS libblas.so.3, put first on LD_LIBRARY_PATH for the
#                   PyTorch runs only (Debian's torch uses the system libblas; see bench/README.md)
#
# Prints the date, the CPU, both results, the ratio switchyard tokens/s over pytorch tokens/s for
# training and for generation, and the exact commands. Exits non-zero if any run fails or its last
# stdout line is not a JSON object with the expected fields.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="${SWITCHYARD_BIN:-$root/build/switchyard}"
torch_python="${TORCH_PYTHON:-/usr/bin/python3}"
threads="${THREADS:-$(nproc)}"
steps="${STEPS:-5}"
tokens="${TOKENS:-32}"
batch=4
seq=64

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

cmd_sy_train=(env "OMP_NUM_THREADS=$threads" "$bin" bench train --model gpt2-124m --batch "$batch"
              --seq "$seq" --steps "$steps" --warmup 1 --json)
cmd_sy_gen=(env "OMP_NUM_THREADS=$threads" "$bin" bench generate --model gpt2-124m --tokens "$tokens" --json)
cmd_pt_train=("${torch_env[@]}" "$torch_python" "$root/bench/pytorch_gpt2.py" train --preset gpt2-124m
              --batch "$batch" --seq "$seq" --steps "$steps" --warmup 1 --threads "$threads")
cmd_pt_gen=("${torch_env[@]}" "$torch_python" "$root/bench/pytorch_gpt2.py" generate --preset gpt2-124m
            --tokens "$tokens" --threads "$threads")

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

run switchyard_train "${cmd_sy_train[@]}"
run switchyard_generate "${cmd_sy_gen[@]}"
run pytorch_train "${cmd_pt_train[@]}"
run pytorch_generate "${cmd_pt_gen[@]}"

quote() { local out="" a; for a in "$@"; do out+="$(printf '%q' "$a") "; done; echo "${out% }"; }

cpu="$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)"
python3 - "$work" "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "${cpu:-unknown}" "$(nproc)" "$threads" \
  "$(quote "${cmd_sy_train[@]}")" "$(quote "${cmd_sy_gen[@]}")" \
  "$(quote "${cmd_pt_train[@]}")" "$(quote "${cmd_pt_gen[@]}")" <<'EOF'
import json, os, sys

work, date, cpu, nproc, threads = sys.argv[1:6]
commands = sys.argv[6:10]
need = {"switchyard_train": ["ms_per_step", "tokens_per_s"],
        "switchyard_generate": ["tokens_per_s"],
        "pytorch_train": ["ms_per_step", "tokens_per_s", "peak_rss_mib"],
        "pytorch_generate": ["ms_per_token", "tokens_per_s", "peak_rss_mib"]}
res = {}
for name, fields in need.items():
    with open(os.path.join(work, name + ".json")) as f:
        line = f.read().strip()
    try:
        obj = json.loads(line)
    except ValueError:
        sys.exit(f"error: {name}: last stdout line is not JSON: {line[:200]!r}")
    if not isinstance(obj, dict):
        sys.exit(f"error: {name}: last stdout line is JSON but not an object: {line[:200]!r}")
    for k in fields:
        if not isinstance(obj.get(k), (int, float)) or obj[k] <= 0:
            sys.exit(f"error: {name}: expected a positive number in field '{k}', got {obj.get(k)!r}")
    res[name] = obj


def num(obj, key, fmt="{:.2f}"):
    v = obj.get(key)
    return fmt.format(v) if isinstance(v, (int, float)) else "-"


def ms_per_token(obj):
    if isinstance(obj.get("ms_per_token"), (int, float)):
        return obj["ms_per_token"]
    return 1e3 / obj["tokens_per_s"]


sy_t, sy_g = res["switchyard_train"], res["switchyard_generate"]
pt_t, pt_g = res["pytorch_train"], res["pytorch_generate"]
print(f"date:    {date}")
print(f"machine: {cpu}, {nproc} CPUs online; {threads} threads for both")
print(f"pytorch: torch {pt_t.get('torch', '?')}, BLAS {pt_t.get('blas', '?')}")
print()
print(f"{'':22}{'switchyard':>14}{'pytorch':>14}{'ratio sy/pt':>14}")
rows = [
    ("train tokens/s", num(sy_t, "tokens_per_s"), num(pt_t, "tokens_per_s"),
     f"{sy_t['tokens_per_s'] / pt_t['tokens_per_s']:.2f}"),
    ("train ms/step", num(sy_t, "ms_per_step", "{:.1f}"), num(pt_t, "ms_per_step", "{:.1f}"), ""),
    ("train GFLOP/s", num(sy_t, "gflops"), num(pt_t, "gflops"), ""),
    ("train peak RSS MiB", num(sy_t, "peak_rss_mib", "{:.0f}"), num(pt_t, "peak_rss_mib", "{:.0f}"), ""),
    ("generate tokens/s", num(sy_g, "tokens_per_s"), num(pt_g, "tokens_per_s"),
     f"{sy_g['tokens_per_s'] / pt_g['tokens_per_s']:.2f}"),
    ("generate ms/token", f"{ms_per_token(sy_g):.1f}", f"{ms_per_token(pt_g):.1f}", ""),
    ("generate peak RSS MiB", num(sy_g, "peak_rss_mib", "{:.0f}"), num(pt_g, "peak_rss_mib", "{:.0f}"), ""),
]
for label, a, b, r in rows:
    print(f"{label:22}{a:>14}{b:>14}{r:>14}")
print()
print("raw results:")
for name in need:
    print(f"  {name}: {json.dumps(res[name])}")
print()
print("commands:")
for c in commands:
    print(f"  {c}")
EOF
