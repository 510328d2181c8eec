#include "cli/bench_output.h"

#include <cstdio>

namespace switchyard::cli {

void print_json_line(const nlohmann::json& json) { std::printf("%s\n", json.dump().c_str()); }

nlohmann::json report_kernel_times(const backend::ProfilingBackend& profiler, int steps, double step_ms) {
  nlohmann::json per_step = nlohmann::json::object();
  double total = 0;
  std::printf("%-28s %10s %7s %9s\n", "kernel", "ms/step", "share", "calls");
  for (const backend::KernelTime& t : profiler.kernel_times()) {
    const double ms = t.ms / steps;
    total += ms;
    per_step[t.kernel] = ms;
    std::printf("%-28s %10.2f %6.1f%% %9lld\n", t.kernel.c_str(), ms, 100 * ms / step_ms,
                static_cast<long long>(t.calls / steps));
  }
  std::printf("%-28s %10.2f %6.1f%%  (the rest of the step is host code between kernels)\n",
              "all kernels", total, 100 * total / step_ms);
  return per_step;
}

}  // namespace switchyard::cli
