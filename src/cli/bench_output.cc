#include "cli/bench_output.h"

#include <cstdio>

#include "backend/cpu/thread_adapter.h"

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

void report_cpu_threads(nlohmann::json* json) {
  const backend::cpu::AdapterHistory h = backend::cpu::adapter_history();
  if (h.reduced > 0) {
    std::printf("  threads: the CPU backend ran fewer than its %d (down to %d) in %d of %d samples: "
                "other processes kept the CPUs busy (OMP_NUM_THREADS fixes the count)\n",
                h.budget, h.fewest, h.reduced, h.samples);
  }
  if (json) {
    (*json)["cpu_threads"] = {{"budget", h.budget}, {"adapted", h.enabled}, {"samples", h.samples},
                              {"reduced_samples", h.reduced}, {"fewest", h.fewest}};
  }
}

}  // namespace switchyard::cli
