#!/usr/bin/env bash
# Installs dependencies, builds Switchyard in Release and runs the whole test suite with ctest.
# SANITIZE=1 also builds and runs the tests under AddressSanitizer + UndefinedBehaviorSanitizer
# (build-asan/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"

if [[ "${SANITIZE:-0}" == "1" ]]; then
  # -O1 with line tables: the sanitizers' recommended optimisation, and it compiles in about 60% of
  # -O2 -g's time (the sanitized build is most of CI's time); stack traces still name file:line.
  # The kernel micro-benchmarks are no test, so this pass leaves them out.
  BUILD_DIR=build-asan BUILD_TYPE=RelWithDebInfo scripts/build.sh -DSWITCHYARD_SANITIZE=ON \
    -DSWITCHYARD_BUILD_BENCHMARKS=OFF -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$(nproc)"
fi
