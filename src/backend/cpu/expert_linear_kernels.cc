// The one place the expert-product templates are instantiated (see the note at the end of
// cpu_kernels.h).
#include "backend/cpu/expert_linear_kernels.h"

namespace switchyard::backend::cpu {

SWITCHYARD_CPU_EXPERT_LINEAR_INSTANCES(, float)
SWITCHYARD_CPU_EXPERT_LINEAR_INSTANCES(, double)

}  // namespace switchyard::backend::cpu
