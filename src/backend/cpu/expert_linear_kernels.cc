// The one place the expert-product templates are instantiated (see the note at the end of
// cpu_kernels.h), and the expert products over inference weights (bf16, MXFP4).
#include "backend/cpu/expert_linear_kernels.h"

namespace switchyard::backend::cpu {

SWITCHYARD_CPU_EXPERT_LINEAR_INSTANCES(, float)
SWITCHYARD_CPU_EXPERT_LINEAR_INSTANCES(, double)

void expert_linear_forward(float* out, const float* inp, const WeightMatrix& weight,
                           const float* bias, const int32_t* offsets, int E, int C, int OC) {
  for_each_expert(offsets, E, C, OC, [&](int e, int first, int rows) {
    matmul_forward(out + static_cast<size_t>(first) * OC, inp + static_cast<size_t>(first) * C,
                   weight.rows_from(static_cast<int64_t>(e) * OC, C),
                   bias ? bias + static_cast<size_t>(e) * OC : nullptr, rows, C, OC);
  });
}

}  // namespace switchyard::backend::cpu
