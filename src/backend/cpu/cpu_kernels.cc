// The one place the kernel templates are instantiated (see the note at the end of cpu_kernels.h),
// and the kernels over inference weights (bf16, MXFP4) that are not templates.
#include "backend/cpu/cpu_kernels.h"

#include "core/fp32_halves.h"

namespace switchyard::backend::cpu {

SWITCHYARD_CPU_KERNEL_INSTANCES(, float)
SWITCHYARD_CPU_KERNEL_INSTANCES(, double)

void matmul_forward(float* out, const float* inp, const WeightMatrix& weight, const float* bias,
                    int N, int C, int OC) {
  batch_invariant_linear(out, inp, weight, N, C, OC);
  add_bias(out, bias, N, OC);
}

void embedding_forward_bf16(float* out, const int32_t* ids, const uint16_t* table,
                            const int32_t* position_ids, const float* position_table, int N,
                            int C) {
  const bool parallel = static_cast<size_t>(N) * C > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int n = 0; n < N; ++n) {
    float* o = out + static_cast<size_t>(n) * C;
    const uint16_t* e = table + static_cast<size_t>(ids[n]) * C;
    // Widening bf16 is exact: its bits are the upper half of the fp32's.
    SWITCHYARD_OMP(omp simd)
    for (int c = 0; c < C; ++c) o[c] = std::bit_cast<float>(static_cast<uint32_t>(e[c]) << 16);
    if (position_table == nullptr) continue;
    const float* p = position_table + static_cast<size_t>(position_ids[n]) * C;
    SWITCHYARD_OMP(omp simd)
    for (int c = 0; c < C; ++c) o[c] += p[c];
  }
}

void embedding_forward_halves(float* out, uint16_t* out_bf16, const int32_t* ids,
                              HalvesTable table, const int32_t* position_ids,
                              HalvesTable positions, int N, int C) {
  const bool parallel = static_cast<size_t>(N) * C > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int n = 0; n < N; ++n) {
    const size_t row = static_cast<size_t>(ids[n]) * C;
    const size_t position_row = positions.high ? static_cast<size_t>(position_ids[n]) * C : 0;
    const size_t o = static_cast<size_t>(n) * C;
    for (int c = 0; c < C; ++c) {
      float value = table.value(row + c);
      if (positions.high) value += positions.value(position_row + c);
      if (out) out[o + c] = value;
      if (out_bf16) out_bf16[o + c] = float_to_bf16(value);
    }
  }
}

}  // namespace switchyard::backend::cpu
