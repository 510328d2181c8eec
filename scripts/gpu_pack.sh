#!/usr/bin/env bash
# Packs what a GPU session runs on a lent GPU machine that has CUDA and PyTorch but none of
# Switchyard's build dependencies: the CUDA-enabled binaries built here and the shared libraries
# they need, into .gpu/bundle.tar.gz (ignored by git; carried to the machine with the working tree).
# scripts/gpu_check.sh unpacks and runs it there.
#
# Usage: scripts/gpu_pack.sh            (builds build/ first if needed; needs nvcc here)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
binaries=(build/switchyard build/tests/cuda_backend_test build/tests/cuda_gpt_oss_test
          build/tests/gpt2_parity_test)
for b in "${binaries[@]}"; do
  [[ -x "$b" ]] || { echo "error: $b was not built (is nvcc installed?)" >&2; exit 1; }
done
rm -rf .gpu && mkdir -p .gpu/lib
# Every shared library of the binaries except the C/C++ runtime (the GPU machine's is newer) and
# the CUDA libraries (it has its own, matching its driver; cuBLASLt alone is 500 MB).
for lib in $(ldd "${binaries[@]}" | awk '/=> \//{print $3}' | sort -u); do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libstdc++.so*|libgcc_s.so*|libdl.so*|libpthread.so*|librt.so*) ;;
    libcuda.so*|libcudart.so*|libcublas*.so*|libcudnn*.so*|libnccl.so*) ;;  # the GPU machine has its own
    *) cp -L "$lib" .gpu/lib/ ;;
  esac
done
tar -czf .gpu/bundle.tar.gz "${binaries[@]}" .gpu/lib
rm -rf .gpu/lib
ls -la .gpu/bundle.tar.gz
