// The one place the RMSNorm and RoPE templates are instantiated (see the note at the end of
// cpu_kernels.h).
#include "backend/cpu/norm_rope_kernels.h"

namespace switchyard::backend::cpu {

SWITCHYARD_CPU_NORM_ROPE_INSTANCES(, float)
SWITCHYARD_CPU_NORM_ROPE_INSTANCES(, double)

}  // namespace switchyard::backend::cpu
