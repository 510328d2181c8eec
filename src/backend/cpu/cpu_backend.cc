#include "backend/cpu/cpu_backend.h"

#include <sys/mman.h>
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
constexpr size_t kHugePage = size_t{2} << 20;
// Zeroed buffers from this size on are mapped pages of their own (allocate_zeroed); below,
// rounding up to whole 2 MiB pages would waste too much.
constexpr size_t kMappedBytes = size_t{4} << 20;
// Copies and fills above this size are split across threads; below it one core saturates memory.
constexpr size_t kParallelCopyBytes = size_t{8} << 20;

double gib(size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

size_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<size_t>(pages) * static_cast<size_t>(page_size);
}

// Refuses what cannot fit in RAM up front: with overcommit an allocation could "succeed" and the
// process die later when it touches the pages, and sanitizer allocators abort on absurd sizes.
void check_fits_in_memory(size_t bytes) {
  const size_t physical = physical_memory_bytes();
  if ((bytes > physical && physical != 0) || bytes > SIZE_MAX - kHugePage) {
    fail(
        "out of host memory: could not allocate {} bytes ({:.2f} GiB); this machine has {:.2f} GiB",
        bytes, gib(bytes), gib(physical));
  }
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
  check_fits_in_memory(bytes);
  const size_t rounded = (std::max<size_t>(bytes, 1) + kAlignment - 1) / kAlignment * kAlignment;
  void* ptr = std::aligned_alloc(kAlignment, rounded);
  if (ptr == nullptr) {
    fail("out of host memory: could not allocate {} bytes ({:.2f} GiB)", bytes, gib(bytes));
  }
  return ptr;
}

void* CpuBackend::allocate_zeroed(size_t bytes) {
  if (bytes < kMappedBytes) return Backend::allocate_zeroed(bytes);
  check_fits_in_memory(bytes);
  // Fresh pages of its own, zero until written, so a buffer costs resident memory only as it is
  // used. These buffers live long and the kernels stream them (weights, gradients, moments, the KV
  // cache): on 4 KiB pages every 4 KiB streamed costs a TLB miss, whose page walk is
  // two-dimensional, and slow, in a virtual machine, so 2 MiB pages are asked for (transparent huge
  // pages in "madvise" mode give them only on request; the advice may be refused harmlessly).
  const size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
  void* ptr = mmap(nullptr, rounded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ptr == MAP_FAILED) {
    fail("out of host memory: could not map {} bytes ({:.2f} GiB)", bytes, gib(bytes));
  }
  madvise(ptr, rounded, MADV_HUGEPAGE);
  std::lock_guard lock(mapped_mutex_);
  mapped_.emplace(ptr, Mapping{.length = rounded});
  return ptr;
}

size_t CpuBackend::make_resident(void* ptr, size_t bytes) {
  constexpr size_t kPage = 4096;  // mapped buffers start on a page; 2 MiB pages fault at one touch
  size_t from = 0, to = 0;
  {
    std::lock_guard lock(mapped_mutex_);
    const auto it = mapped_.find(ptr);
    if (it == mapped_.end()) return bytes;
    Mapping& m = it->second;
    const size_t limit = physical_memory_bytes() / 8, wanted = std::min(bytes, m.length);
    const size_t room = limit > resident_ ? limit - resident_ : 0;
    from = m.resident;
    to = std::max(from, std::min(wanted, from + room));
    to = std::min(m.length, (to + kPage - 1) / kPage * kPage);  // whole pages, from a page on
    resident_ += to - from;
    m.resident = to;
  }
  char* base = static_cast<char*>(ptr) + from;
  split_bytes(to - from, [&](size_t begin, size_t n) {
    // An atomic or of zero is a write (it faults the page in for writing at once, where a read
    // would map the shared zero page first) that leaves the byte as it was.
    for (size_t at = begin; at < begin + n; at += kPage) {
      __atomic_fetch_or(base + at, char{0}, __ATOMIC_RELAXED);
    }
  });
  return std::min(to, bytes);
}

void CpuBackend::release(void* ptr) {
  {
    std::lock_guard lock(mapped_mutex_);
    const auto it = mapped_.find(ptr);
    if (it != mapped_.end()) {
      munmap(ptr, it->second.length);
      resident_ -= it->second.resident;
      mapped_.erase(it);
      return;
    }
  }
  std::free(ptr);
}

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
