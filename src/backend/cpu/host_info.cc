// describe_host_cpu(): what the CPU backend runs on, for `switchyard devices` and run reports.
#include <unistd.h>

#include <fstream>
#include <set>
#include <string>
#include <utility>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/thread_budget.h"
#include "core/error.h"

namespace switchyard::backend::cpu {
namespace {

std::string trim(const std::string& s) {
  const size_t begin = s.find_first_not_of(" \t");
  const size_t end = s.find_last_not_of(" \t\r\n");
  return begin == std::string::npos ? std::string() : s.substr(begin, end - begin + 1);
}

struct CpuInfo {
  std::string model;
  int logical = 0;
  int physical = 0;  // distinct (physical id, core id) pairs
};

CpuInfo read_cpuinfo() {
  CpuInfo info;
  std::ifstream file("/proc/cpuinfo");
  std::string line;
  std::string package;
  std::set<std::pair<std::string, std::string>> cores;
  while (std::getline(file, line)) {
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = trim(line.substr(0, colon));
    const std::string value = trim(line.substr(colon + 1));
    if (key == "processor") {
      ++info.logical;
    } else if (key == "model name" && info.model.empty()) {
      info.model = value;
    } else if (key == "physical id") {
      package = value;
    } else if (key == "core id") {
      cores.emplace(package, value);
    }
  }
  info.physical = static_cast<int>(cores.size());
  return info;
}

// The widest vector instruction set the CPU offers, as the kernels compiled with -march=native see
// it.
std::string isa_level() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    std::string isa = "AVX-512";
    if (__builtin_cpu_supports("avx512bf16")) isa += " (BF16)";
    return isa;
  }
  if (__builtin_cpu_supports("avx2")) return __builtin_cpu_supports("fma") ? "AVX2+FMA" : "AVX2";
  if (__builtin_cpu_supports("avx")) return "AVX";
  if (__builtin_cpu_supports("sse4.2")) return "SSE4.2";
  return "baseline x86-64";
#elif defined(__aarch64__)
  return "AArch64 NEON";
#else
  return "unknown ISA";
#endif
}

}  // namespace

std::string describe_host_cpu() {
  const CpuInfo info = read_cpuinfo();
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGE_SIZE);
  const double memory_gib = pages > 0 && page_size > 0 ? static_cast<double>(pages) * page_size /
                                                             (1024.0 * 1024.0 * 1024.0)
                                                       : 0;
  const int logical =
      info.logical > 0 ? info.logical : static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  const int physical = info.physical > 0 ? info.physical : logical;
  const ThreadBudget budget = current_thread_budget();
  return fmt::format("{}, {} cores / {} threads, {}, {:.1f} GiB RAM, {} OpenMP thread{} ({}; fewer while other work keeps the CPUs busy; {} waiting)",
                     info.model.empty() ? "unknown CPU" : info.model, physical, logical,
                     isa_level(), memory_gib, budget.threads, budget.threads == 1 ? "" : "s", budget.reason, openmp_wait_policy());
}

}  // namespace switchyard::backend::cpu
