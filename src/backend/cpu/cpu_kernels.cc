// The one place the kernel templates are instantiated (see the note at the end of cpu_kernels.h).
#include "backend/cpu/cpu_kernels.h"

namespace switchyard::backend::cpu {

SWITCHYARD_CPU_KERNEL_INSTANCES(, float)
SWITCHYARD_CPU_KERNEL_INSTANCES(, double)

}  // namespace switchyard::backend::cpu
