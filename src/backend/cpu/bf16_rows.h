// bf16 <-> fp32 conversion of one row (or chunk) inside a thread's own loop: inline, vectorised for
// the kernels' target (AVX-512 here), and without the OpenMP region core/dtype.h's whole-tensor
// conversions open, which costs microseconds a call when called per row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "core/dtype.h"

namespace switchyard::backend::cpu {

inline void widen_bf16_row(const uint16_t* bits, float* values, size_t n) {
  SWITCHYARD_OMP(omp simd)
  for (size_t i = 0; i < n; ++i) values[i] = widen_bf16_bits(bits[i]);
}

inline void narrow_bf16_row(const float* values, uint16_t* bits, size_t n) {
  SWITCHYARD_OMP(omp simd)
  for (size_t i = 0; i < n; ++i) bits[i] = narrow_to_bf16_bits(values[i]);
}

// fn(row, buffers) for each of N rows of C values, in parallel; buffers holds `streams` rows of
// fp32 of the thread's own, for the rows it widens.
template <typename Fn>
void for_each_row(int N, int C, int streams, Fn&& fn) {
  SWITCHYARD_OMP(omp parallel if (static_cast<size_t>(N) * C > kParallelThreshold))
  {
    std::vector<float> buffers(static_cast<size_t>(streams) * C);
    SWITCHYARD_OMP(omp for schedule(static))
    for (int n = 0; n < N; ++n) fn(n, buffers.data());
  }
}

}  // namespace switchyard::backend::cpu
