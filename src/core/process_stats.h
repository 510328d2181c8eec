// Facts about this process that benchmarks report.
#pragma once

#include <cstddef>

namespace switchyard {

// Peak resident set size (VmHWM) in bytes; 0 where the platform does not report it.
size_t peak_rss_bytes();

}  // namespace switchyard
