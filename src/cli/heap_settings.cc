#include "cli/heap_settings.h"

#include <malloc.h>

namespace switchyard::cli {

void keep_freed_memory_for_reuse() {
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

}  // namespace switchyard::cli
