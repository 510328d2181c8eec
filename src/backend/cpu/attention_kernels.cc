// The one place the attention templates are instantiated (see the note at the end of
// cpu_kernels.h).
#include "backend/cpu/attention_kernels.h"

namespace switchyard::backend::cpu {

SWITCHYARD_CPU_ATTENTION_INSTANCES(, float)
SWITCHYARD_CPU_ATTENTION_INSTANCES(, double)
template void paged_attention<float, uint16_t>(float*, const float*, const uint16_t*,
                                               const uint16_t*, const int32_t*, const int32_t*,
                                               const int32_t*, const float*, const PagedGeometry&,
                                               float);

}  // namespace switchyard::backend::cpu
