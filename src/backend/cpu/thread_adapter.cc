#include "backend/cpu/thread_adapter.h"

#include <omp.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#include "backend/cpu/thread_budget.h"

namespace switchyard::backend::cpu {
namespace {

double seconds(const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec * 1e-6; }

std::string read_file(const char* path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<int> affinity_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  }
  return cpus;
}

// What the process adapts, fixed at the first call: the budget and the CPUs it may run on.
struct Adapter {
  int budget = 1;
  bool enabled = false;
  std::vector<int> cpus;
  int current = 1;
  int samples = 0, reduced = 0, fewest = 1;
  CpuTimes last;
  double last_other = 0;  // other cores in the last sample
  std::chrono::steady_clock::time_point next_sample;
};

Adapter& adapter() {
  static Adapter a = [] {
    Adapter a;
    const ThreadBudget budget = current_thread_budget();
    a.budget = budget.threads;
    a.enabled = budget.threads > 1 && budget.reason.rfind("OMP_NUM_THREADS", 0) != 0;
    a.cpus = affinity_cpus();
    a.current = a.fewest = a.budget;
    if (a.enabled) a.last = read_cpu_times(a.cpus);
    a.next_sample = std::chrono::steady_clock::now() +
                    std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        std::chrono::duration<double>(kSampleSeconds));
    return a;
  }();
  return a;
}

}  // namespace

std::vector<double> parse_proc_stat_busy(const std::string& proc_stat, double ticks_per_second) {
  std::vector<double> busy;
  std::istringstream in(proc_stat);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("cpu", 0) != 0 || line.size() < 4 || !std::isdigit(static_cast<unsigned char>(line[3]))) {
      continue;  // the "cpu " total line and everything else
    }
    std::istringstream fields(line);
    std::string name;
    double user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
    fields >> name >> user >> nice >> system >> idle >> iowait >> irq >> softirq >> steal;
    const size_t cpu = static_cast<size_t>(std::stoi(name.substr(3)));
    if (busy.size() <= cpu) busy.resize(cpu + 1, 0.0);
    busy[cpu] = (user + nice + system + irq + softirq + steal) / ticks_per_second;
  }
  return busy;
}

CpuTimes read_cpu_times(const std::vector<int>& cpus) {
  CpuTimes t;
  t.wall = std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  const std::vector<double> busy =
      parse_proc_stat_busy(read_file("/proc/stat"), static_cast<double>(sysconf(_SC_CLK_TCK)));
  for (int c : cpus) {
    if (c < static_cast<int>(busy.size())) t.busy += busy[c];
  }
  rusage usage{};
  if (getrusage(RUSAGE_SELF, &usage) == 0) t.self = seconds(usage.ru_utime) + seconds(usage.ru_stime);
  return t;
}

double other_cores(const CpuTimes& before, const CpuTimes& after) {
  const double wall = after.wall - before.wall;
  if (wall <= 0) return 0;
  return std::max(0.0, ((after.busy - before.busy) - (after.self - before.self)) / wall);
}

int adapted_threads(int budget, int current, double other) {
  const double free = static_cast<double>(budget) - other;
  const int fits = std::clamp(static_cast<int>(std::floor(free + 0.3)), 1, budget);
  // Down as soon as the free cores fall clearly short of the threads; up only when they clearly
  // exceed them, so that a machine hovering near a boundary does not flap.
  if (free < current - 0.3 || free > current + 0.7) return fits;
  return current;
}

int next_threads(int budget, int current, double previous_other, double other) {
  return adapted_threads(budget, current, std::min(previous_other, other));
}

void adapt_threads() {
  Adapter& a = adapter();
  if (!a.enabled) return;
  const auto now = std::chrono::steady_clock::now();
  if (now < a.next_sample) return;
  a.next_sample = now + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(kSampleSeconds));
  const CpuTimes sample = read_cpu_times(a.cpus);
  const double other = other_cores(a.last, sample);
  const int threads = next_threads(a.budget, a.current, a.last_other, other);
  a.last = sample;
  a.last_other = other;
  ++a.samples;
  if (threads < a.budget) ++a.reduced;
  a.fewest = std::min(a.fewest, threads);
  if (threads != a.current) {
    a.current = threads;
    omp_set_num_threads(threads);
  }
}

AdapterHistory adapter_history() {
  const Adapter& a = adapter();
  return {.budget = a.budget, .enabled = a.enabled, .samples = a.samples, .reduced = a.reduced,
          .fewest = a.fewest};
}

}  // namespace switchyard::backend::cpu
