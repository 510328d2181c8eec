// The grouping of assignments by expert, and the one place the mixture-of-experts templates are
// instantiated (see the note at the end of cpu_kernels.h).
#include "backend/cpu/moe_kernels.h"

namespace switchyard::backend::cpu {

void group_by_expert(int32_t* order, int32_t* rows, int32_t* position, int32_t* offsets,
                     const int32_t* expert_ids, int A, int k, int E) {
  std::fill(offsets, offsets + E + 1, 0);
  for (int a = 0; a < A; ++a) ++offsets[expert_ids[a]];
  // Running sums: offsets[e] becomes the end of expert e's range ...
  for (int e = 1; e < E; ++e) offsets[e] += offsets[e - 1];
  // ... and, filling each range from its end while the assignments go from the last down,
  // its start, with the assignments of an expert in ascending order.
  for (int a = A - 1; a >= 0; --a) {
    const int32_t g = --offsets[expert_ids[a]];
    order[g] = a;
    rows[g] = a / k;
    position[a] = g;
  }
  offsets[E] = A;
}

SWITCHYARD_CPU_MOE_INSTANCES(, float)
SWITCHYARD_CPU_MOE_INSTANCES(, double)

}  // namespace switchyard::backend::cpu
