#!/usr/bin/env bash
# Builds the CUDA kernel checks against the host emulator from the current src/backend/cuda and
# runs them (see README.md). Needs g++ (C++20), python3, the CUDA headers and libfmt; no GPU, no
# CUDA runtime library, no build directory.
#
# Usage: tools/cuda_emulator/run.sh [--asan | --tsan] [--build-dir DIR] [--block-order ORDER]
#                                   [--] [kernel_checks arguments: --quick, section names]
#   --asan         AddressSanitizer + UndefinedBehaviorSanitizer (misaligned 16-byte accesses,
#                  out-of-bounds reads and writes of global and shared memory)
#   --tsan         ThreadSanitizer (races between the threads of a block)
#   --build-dir    keep the preprocessed sources, objects and binary there (default: a temporary
#                  directory, removed afterwards)
#   --block-order  forward (default), reverse or shuffle: the order in which blocks run
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cuda_include=${CUDA_INCLUDE:-/usr/local/cuda/include}
mode=plain
build=
checks_args=()

while (($#)); do
  case $1 in
    --asan) mode=asan ;;
    --tsan) mode=tsan ;;
    --build-dir) build=$2; shift ;;
    --block-order) export CUDA_EMULATOR_BLOCK_ORDER=$2; shift ;;
    --) shift; checks_args+=("$@"); break ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) checks_args+=("$1") ;;
  esac
  shift
done

if [[ ! -f $cuda_include/cuda_runtime.h ]]; then
  echo "run.sh: no CUDA headers in $cuda_include (set CUDA_INCLUDE to the toolkit's include" \
       "directory)" >&2
  exit 1
fi

if [[ -z $build ]]; then
  build=$(mktemp -d "${TMPDIR:-/tmp}/cuda_emulator.XXXXXX")
  trap 'rm -rf "$build"' EXIT
fi
mkdir -p "$build/src/backend/cuda" "$build/obj"

# -ffp-contract=off: no fused multiply-adds anywhere, so that the plain-loop references and the
# kernels' _rn intrinsics round every operation, as the kernels' bit-exact contracts assume.
flags=(-std=c++20 -g -pthread -ffp-contract=off -Wall -Wno-unknown-pragmas)
case $mode in
  plain) flags+=(-O2) ;;
  asan) flags+=(-O1 -fno-omit-frame-pointer -fsanitize=address,undefined
                -fno-sanitize-recover=all) ;;
  tsan) flags+=(-O1 -fsanitize=thread) ;;
esac

started=$SECONDS
for source in "$repo"/src/backend/cuda/*.cu "$repo"/src/backend/cuda/*.cuh; do
  python3 "$here/preprocess.py" "$source" "$build/src/backend/cuda/${source##*/}"
done

# Compiles in parallel, one job per core; the first failure stops the build.
jobs_max=$(nproc)
pids=()
compile() {  # compile OUTPUT g++-arguments...
  local output=$1
  shift
  g++ "${flags[@]}" "$@" -c -o "$output" &
  pids+=($!)
  if ((${#pids[@]} >= jobs_max)); then
    wait "${pids[0]}" || exit 1
    pids=("${pids[@]:1}")
  fi
}
kernel_includes=(-include "$here/emulator.h" -I "$here" -I "$build/src" -I "$repo/src"
                 -I "$cuda_include")
for source in "$build"/src/backend/cuda/*.cu; do
  name=${source##*/}
  compile "$build/obj/${name%.cu}.o" "${kernel_includes[@]}" -x c++ "$source"
done
for source in "$here"/*_checks.cc; do
  name=${source##*/}
  compile "$build/obj/${name%.cc}.o" -I "$here" -I "$repo/src" -I "$cuda_include" "$source"
done
compile "$build/obj/dtype.o" -I "$repo/src" "$repo/src/core/dtype.cc"
for pid in "${pids[@]}"; do wait "$pid" || exit 1; done
g++ "${flags[@]}" -o "$build/kernel_checks" "$build"/obj/*.o -lfmt
echo "run.sh: built the $mode checks in $((SECONDS - started)) s"

started=$SECONDS
status=0
(cd "$repo" && "$build/kernel_checks" "${checks_args[@]}") || status=$?
echo "run.sh: $mode checks ran in $((SECONDS - started)) s, exit status $status"
exit $status
