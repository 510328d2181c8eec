#include "backend/cpu/cpu_backend.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>

#include "core/error.h"

namespace switchyard::backend::cpu {
namespace {

constexpr size_t kAlignment = 64;
// Copies and fills above this size are split across threads; below it one core saturates memory.
constexpr size_t kParallelCopyBytes = size_t{8} << 20;

double gib(size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

size_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<size_t>(pages) * static_cast<size_t>(page_size);
}

template <typename Fn>
void split_bytes(size_t bytes, Fn&& fn) {
  if (bytes == 0) return;  // pointers may be null then, and memcpy/memset must not see them
  if (bytes < kParallelCopyBytes) {
    fn(size_t{0}, bytes);
    return;
  }
  constexpr size_t kChunk = size_t{1} << 20;
  const long chunks = static_cast<long>((bytes + kChunk - 1) / kChunk);
#pragma omp parallel for schedule(static)
  for (long i = 0; i < chunks; ++i) {
    const size_t begin = static_cast<size_t>(i) * kChunk;
    fn(begin, std::min(kChunk, bytes - begin));
  }
}

}  // namespace

size_t CpuBackend::peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) {
      return static_cast<size_t>(std::strtoull(line.c_str() + 6, nullptr, 10)) * 1024;  // in kB
    }
  }
  return 0;
}

std::string CpuBackend::description() const { return describe_host_cpu(); }

void* CpuBackend::allocate(size_t bytes) {
  // Refuse what cannot fit in RAM up front: with overcommit the allocation could "succeed" and the
  // process die later when it touches the pages, and sanitizer allocators abort on absurd sizes.
  const size_t physical = physical_memory_bytes();
  if ((bytes > physical && physical != 0) || bytes > SIZE_MAX - kAlignment) {
    fail(
        "out of host memory: could not allocate {} bytes ({:.2f} GiB); this machine has {:.2f} GiB",
        bytes, gib(bytes), gib(physical));
  }
  const size_t rounded = (std::max<size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
  void* ptr = std::aligned_alloc(kAlignment, rounded);
  if (ptr == nullptr) {
    fail("out of host memory: could not allocate {} bytes ({:.2f} GiB)", bytes, gib(bytes));
  }
  return ptr;
}

void CpuBackend::release(void* ptr) { std::free(ptr); }

void CpuBackend::copy_to_device(void* dst, const void* src, size_t bytes) {
  split_bytes(bytes, [&](size_t begin, size_t n) {
    std::memcpy(static_cast<char*>(dst) + begin, static_cast<const char*>(src) + begin, n);
  });
}

void CpuBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  copy_to_device(dst, src, bytes);
}

void CpuBackend::fill_zero(void* ptr, size_t bytes) {
  split_bytes(bytes,
              [&](size_t begin, size_t n) { std::memset(static_cast<char*>(ptr) + begin, 0, n); });
}

}  // namespace switchyard::backend::cpu
