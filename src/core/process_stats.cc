#include "core/process_stats.h"

#include <fstream>
#include <string>

namespace switchyard {

size_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmHWM:")) return std::stoull(line.substr(6)) * 1024;  // reported in kB
  }
  return 0;
}

}  // namespace switchyard
