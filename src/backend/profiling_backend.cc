#include "backend/profiling_backend.h"

#include <algorithm>

namespace switchyard::backend {

std::vector<KernelTime> ProfilingBackend::kernel_times() const {
  std::vector<KernelTime> out;
  for (const auto& [kernel, t] : times_) out.push_back(t);
  std::sort(out.begin(), out.end(),
            [](const KernelTime& a, const KernelTime& b) { return a.ms > b.ms; });
  return out;
}

void ProfilingBackend::charge(const char* kernel, std::chrono::steady_clock::time_point start) {
  inner_.synchronize();
  KernelTime& t = times_[kernel];
  t.kernel = kernel;
  t.calls += 1;
  t.ms +=
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

void ProfilingBackend::copy_to_device(void* dst, const void* src, size_t bytes) {
  timed("copy_to_device", [&] { inner_.copy_to_device(dst, src, bytes); });
}

void ProfilingBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  timed("copy_to_host", [&] { inner_.copy_to_host(dst, src, bytes); });
}

void ProfilingBackend::fill_zero(void* ptr, size_t bytes) {
  timed("fill_zero", [&] { inner_.fill_zero(ptr, bytes); });
}

}  // namespace switchyard::backend
