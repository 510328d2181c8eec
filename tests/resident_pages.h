// How much of a range of this process's memory is backed by pages now, for tests of buffers that
// are mapped lazily or made resident on request.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace switchyard {

inline size_t page_bytes() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

// Pages of [ptr, ptr + bytes) that are resident, as mincore reports them (ptr on a page).
inline size_t resident_pages(const void* ptr, size_t bytes) {
  const size_t pages = (bytes + page_bytes() - 1) / page_bytes();
  std::vector<unsigned char> flags(pages);
  if (mincore(const_cast<void*>(ptr), bytes, flags.data()) != 0) return 0;
  return static_cast<size_t>(
      std::count_if(flags.begin(), flags.end(), [](unsigned char f) { return (f & 1) != 0; }));
}

}  // namespace switchyard
