#!/usr/bin/env bash
# Builds the libFuzzer targets in tests/fuzz/ with clang and runs each for a while on a seed corpus
# of small valid files generated here.
#
# usage: tests/fuzz/run_fuzzers.sh [SECONDS_PER_FUZZER (default 60)] [BUILD_DIR (default build-fuzz)]
#   FUZZ_JOBS   parallel build jobs (default 2)
#   FUZZ_KEEP   if set, the corpus directory is kept (its path is printed)
#
# Inputs that crash a fuzzer are saved under BUILD_DIR/fuzz-artifacts/ and the script exits 1.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${2:-$root/build-fuzz}"
jobs="${FUZZ_JOBS:-2}"

# tests/CMakeLists.txt compiles each fuzzer together with its parser's sources, instrumented.
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSWITCHYARD_BUILD_FUZZERS=ON >/dev/null
cmake --build "$build" --target safetensors_fuzzer token_shard_fuzzer -j"$jobs"

work="$(mktemp -d "${TMPDIR:-/tmp}/switchyard_fuzz.XXXXXX")"
if [[ -z "${FUZZ_KEEP:-}" ]]; then trap 'rm -rf "$work"' EXIT; else echo "corpus kept in $work"; fi
mkdir -p "$work/safetensors" "$work/token_shard" "$build/fuzz-artifacts"

# Seeds: a few valid files of each format, written from first principles (not by the code under test).
python3 - "$work" <<'EOF'
import json, os, struct, sys

work = sys.argv[1]

def safetensors(name, tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes); data packed in list order."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for tname, dtype, shape, raw in tensors:
        header[tname] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(os.path.join(work, "safetensors", name), "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)

safetensors("empty", [])
safetensors("f32", [("w", "F32", [2, 3], struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, 7))],
            {"format": "pt"})
safetensors("mixed", [("a", "BF16", [2], b"\x80\x3f\xc0\x3f"),
                      ("b", "F16", [1, 2], b"\x00\x3c\x00\xc0"),
                      ("c", "I32", [], struct.pack("<i", -5)),
                      ("d", "U16", [0, 4], b""),
                      ("e", "I64", [1], struct.pack("<q", 1 << 40)),
                      ("f", "F32", [1 << 32, 1 << 32, 0], b"")])

def shard(name, tokens):
    header = struct.pack("<3i", 20240520, 1, len(tokens)) + b"\0" * (4 * 253)
    with open(os.path.join(work, "token_shard", name), "wb") as f:
        f.write(header + struct.pack("<%dH" % len(tokens), *tokens))

shard("empty", [])
shard("one", [50256])
shard("several", [(i * 7919) % 65536 for i in range(100)])
EOF

cat >"$work/safetensors.dict" <<'EOF'
"{"
"}"
"["
"]"
"\"dtype\""
"\"shape\""
"\"data_offsets\""
"\"__metadata__\""
"\"F32\""
"\"F16\""
"\"BF16\""
"\"I32\""
"\"U16\""
"\"I64\""
"\"F64\""
"18446744073709551615"
"9223372036854775807"
"-1"
EOF

status=0
for target in safetensors token_shard; do
  echo "=== ${target}_fuzzer for ${seconds}s"
  dict=()
  [[ -f "$work/$target.dict" ]] && dict=(-dict="$work/$target.dict")
  if ! "$build/tests/${target}_fuzzer" "$work/$target" "${dict[@]}" -max_total_time="$seconds" \
      -max_len=4096 -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/${target}-"; then
    echo "!!! ${target}_fuzzer found a failing input; see $build/fuzz-artifacts/"
    status=1
  fi
done
exit "$status"
