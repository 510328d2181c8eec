// The one place the attention templates are instantiated (see the note at the end of
// cpu_kernels.h).
#include "backend/cpu/attention_kernels.h"

namespace switchyard::backend::cpu {

SWITCHYARD_CPU_ATTENTION_INSTANCES(, float)
SWITCHYARD_CPU_ATTENTION_INSTANCES(, double)
SWITCHYARD_CPU_BF16_ATTENTION_INSTANCES()

}  // namespace switchyard::backend::cpu
