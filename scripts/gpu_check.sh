#!/usr/bin/env bash
# One GPU session's checks, in one call on a lent GPU machine (see scripts/gpu_pack.sh, which makes
# the bundle here): unpacks the prebuilt binaries, runs the CUDA test suite (GPT-2's ops and model,
# and gpt-oss's ops and reference checkpoints against the CPU backend with every op on the GPU)
# and the PyTorch parity suite on the GPU, compute-sanitizer memcheck over the kernel tests, then
# bench/compare_cuda.sh.
# Logs go to $OUT (or ./gpu-out); a summary is printed last.
#
# Usage on the GPU machine, from the repository root:  scripts/gpu_check.sh [tests|bench|all]
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
what="${1:-all}"
out="${OUT:-$root/gpu-out}"
mkdir -p "$out"
tar -xzf .gpu/bundle.tar.gz || { echo "error: no .gpu/bundle.tar.gz (run scripts/gpu_pack.sh)" >&2; exit 1; }
# The binaries were built in /work/main; their tests find data through that path.
if [[ "$root" != /work/main && ! -e /work/main ]]; then mkdir -p /work && ln -s "$root" /work/main; fi

# cuBLASLt from the toolkit, or from the CUDA wheels PyTorch brings. Only Switchyard's own binaries
# get the bundle's libraries (PyTorch keeps its own), through a wrapper for scripts that call it.
libs="$root/.gpu/lib"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
         $(python3 -c 'import nvidia.cublas, os; print(os.path.join(os.path.dirname(nvidia.cublas.__file__), "lib"))' 2>/dev/null); do
  if [[ -e "$d/libcublasLt.so.13" ]]; then libs="$libs:$d"; break; fi
done
run() { LD_LIBRARY_PATH="$libs" "$@"; }
printf '#!/bin/sh\nLD_LIBRARY_PATH="%s" exec "%s" "$@"\n' "$libs" "$root/build/switchyard" > .gpu/switchyard
chmod +x .gpu/switchyard
summary=()
# step NAME SECONDS CMD...: runs CMD with the bundle's libraries for at most SECONDS (a hang must
# not eat the session's few minutes of GPU time), logs to $out/NAME.log.
step() {
  local name="$1" limit="$2"; shift 2
  echo "== $name: $*"
  local start=$SECONDS status=0
  run timeout "$limit" "$@" > "$out/$name.log" 2>&1 || status=$?
  if (( status == 0 )); then summary+=("PASS $name ($((SECONDS - start)) s)")
  elif (( status == 124 )); then summary+=("TIMEOUT $name after $limit s: see $name.log")
  else summary+=("FAIL $name (exit $status, $((SECONDS - start)) s): see $name.log"); fi
  tail -n 25 "$out/$name.log"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
run build/switchyard devices
if [[ "$what" == tests || "$what" == all ]]; then
  step cuda_backend_test 120 build/tests/cuda_backend_test
  step cuda_gpt_oss_test 120 build/tests/cuda_gpt_oss_test
  step parity 60 build/tests/gpt2_parity_test --gtest_filter='*cuda*'
  # ClearErrors provokes an out-of-memory error on purpose, which memcheck would report.
  step memcheck 240 compute-sanitizer --tool memcheck --error-exitcode 1 \
    build/tests/cuda_backend_test --gtest_filter='*:-*Training*:*Determin*:*ClearErrors*'
  step memcheck_gpt_oss 180 compute-sanitizer --tool memcheck --error-exitcode 1 \
    build/tests/cuda_gpt_oss_test
fi
if [[ "$what" == bench || "$what" == all ]]; then
  echo "== compare_cuda"
  SWITCHYARD_BIN="$root/.gpu/switchyard" timeout 420 bench/compare_cuda.sh 2>&1 |
    tee "$out/compare_cuda.log"
  if [[ ${PIPESTATUS[0]} -eq 0 ]]; then summary+=("PASS compare_cuda"); else summary+=("FAIL compare_cuda"); fi
  step profile 120 build/switchyard bench train --model gpt2-124m --device cuda --batch 16 --seq 1024 \
    --steps 3 --warmup 2 --profile
fi
printf '%s\n' "${summary[@]}"
