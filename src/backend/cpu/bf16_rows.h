// bf16 <-> fp32 conversion of one row (or chunk) inside a thread's own loop: inline, vectorised for
// the kernels' target (AVX-512 here), and without the OpenMP region core/dtype.h's whole-tensor
// conversions open, which costs microseconds a call when called per row.
#pragma once

#include <cstddef>
#include <cstdint>

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

}  // namespace switchyard::backend::cpu
