#include "backend/cpu/thread_budget.h"

#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include <fmt/format.h>

namespace switchyard::backend::cpu {
namespace {

namespace fs = std::filesystem;

std::optional<double> parse_number(std::string_view text) {
  std::string s(text);
  char* end = nullptr;
  const double value = std::strtod(s.c_str(), &end);
  if (end == s.c_str()) return std::nullopt;
  return value;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// The smallest quota on the way from `cgroup` up to the hierarchy's root under `mount`: a parent's
// limit binds its children too. In a container the path is often the host's and absent from the
// container's view, where the root of the mount is the container's own cgroup.
template <typename ReadQuota>
std::optional<double> smallest_quota(const fs::path& mount, const std::string& cgroup,
                                     ReadQuota read_quota) {
  std::optional<double> smallest;
  fs::path dir = mount / fs::path(cgroup).relative_path();
  while (true) {
    std::error_code ec;
    if (fs::is_directory(dir, ec)) {
      if (std::optional<double> q = read_quota(dir); q && (!smallest || *q < *smallest)) smallest = q;
    }
    if (dir == mount || !dir.has_parent_path() || dir.parent_path() == dir) break;
    dir = dir.parent_path();
  }
  return smallest;
}

std::optional<double> read_cgroup_quota() {
  const std::string self = read_file("/proc/self/cgroup");
  // cgroup v2: one unified hierarchy, the cpu controller's limit in cpu.max.
  if (std::optional<std::string> path = cgroup_path(self, "");
      path && fs::exists("/sys/fs/cgroup/cgroup.controllers")) {
    return smallest_quota("/sys/fs/cgroup", *path, [](const fs::path& dir) {
      return cgroup_v2_quota(read_file(dir / "cpu.max"));
    });
  }
  // cgroup v1: the cpu controller's own hierarchy.
  if (std::optional<std::string> path = cgroup_path(self, "cpu")) {
    for (const char* mount : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"}) {
      if (!fs::exists(fs::path(mount) / "cpu.cfs_quota_us")) continue;
      return smallest_quota(mount, *path, [](const fs::path& dir) {
        return cgroup_v1_quota(read_file(dir / "cpu.cfs_quota_us"),
                               read_file(dir / "cpu.cfs_period_us"));
      });
    }
  }
  return std::nullopt;
}

std::mutex applied_mutex;
std::optional<ThreadBudget> applied;

}  // namespace

std::optional<double> cgroup_v2_quota(std::string_view cpu_max) {
  std::istringstream in{std::string(cpu_max)};
  std::string quota, period;
  if (!(in >> quota >> period) || quota == "max") return std::nullopt;
  const std::optional<double> q = parse_number(quota), p = parse_number(period);
  if (!q || !p || *q <= 0 || *p <= 0) return std::nullopt;
  return *q / *p;
}

std::optional<double> cgroup_v1_quota(std::string_view quota_us, std::string_view period_us) {
  const std::optional<double> q = parse_number(quota_us), p = parse_number(period_us);
  if (!q || !p || *q <= 0 || *p <= 0) return std::nullopt;  // -1: no quota
  return *q / *p;
}

std::optional<std::string> cgroup_path(std::string_view proc_self_cgroup,
                                       std::string_view controller) {
  // Lines are "hierarchy-id:controller,controller:path"; v2's line is "0::path".
  std::istringstream in{std::string(proc_self_cgroup)};
  std::string line;
  while (std::getline(in, line)) {
    const size_t first = line.find(':');
    const size_t second = first == std::string::npos ? first : line.find(':', first + 1);
    if (second == std::string::npos) continue;
    const std::string controllers = line.substr(first + 1, second - first - 1);
    const std::string path = line.substr(second + 1);
    if (controller.empty()) {
      if (controllers.empty()) return path;
      continue;
    }
    std::istringstream names(controllers);
    std::string name;
    while (std::getline(names, name, ',')) {
      if (name == controller) return path;
    }
  }
  return std::nullopt;
}

CpuLimits read_cpu_limits() {
  CpuLimits limits;
  limits.online = std::max(1, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)));
  cpu_set_t set;
  CPU_ZERO(&set);
  limits.affinity =
      sched_getaffinity(0, sizeof(set), &set) == 0 ? std::max(1, CPU_COUNT(&set)) : limits.online;
  limits.quota = read_cgroup_quota();
  if (const char* env = std::getenv("OMP_NUM_THREADS")) {
    // OpenMP allows a list ("4,2") for nested levels; the first entry is the one that applies.
    const int n = std::atoi(env);
    if (n > 0) limits.omp_num_threads = n;
  }
  return limits;
}

ThreadBudget decide_threads(const CpuLimits& limits) {
  if (limits.omp_num_threads) {
    return {*limits.omp_num_threads, fmt::format("OMP_NUM_THREADS={}", *limits.omp_num_threads)};
  }
  ThreadBudget budget{limits.affinity,
                      limits.affinity == limits.online
                          ? fmt::format("{} CPUs online", limits.online)
                          : fmt::format("{} of {} CPUs in the affinity mask", limits.affinity,
                                        limits.online)};
  if (limits.quota) {
    // Whole CPUs only: a thread beyond the quota is throttled, and every barrier waits for it.
    const int allowed = std::max(1, static_cast<int>(std::floor(*limits.quota + 1e-9)));
    if (allowed < budget.threads) {
      budget = {allowed, fmt::format("cgroup CPU quota of {:.3g} CPUs", *limits.quota)};
    }
  }
  return budget;
}

ThreadBudget apply_thread_budget() {
  const ThreadBudget budget = decide_threads(read_cpu_limits());
  omp_set_num_threads(budget.threads);
  std::lock_guard<std::mutex> lock(applied_mutex);
  applied = budget;
  return budget;
}

ThreadBudget current_thread_budget() {
  {
    std::lock_guard<std::mutex> lock(applied_mutex);
    if (applied) return *applied;
  }
  return {omp_get_max_threads(), "OpenMP default"};
}

std::string openmp_wait_policy() {
  // libgomp reads these when it loads; OMP_WAIT_POLICY wins over GOMP_SPINCOUNT only when set.
  if (const char* policy = std::getenv("OMP_WAIT_POLICY"); policy && *policy) {
    std::string p(policy);
    std::transform(p.begin(), p.end(), p.begin(), [](unsigned char c) { return std::tolower(c); });
    return p;
  }
  if (const char* spin = std::getenv("GOMP_SPINCOUNT"); spin && *spin) {
    return fmt::format("spin count {}", spin);
  }
  return "OpenMP default";
}

}  // namespace switchyard::backend::cpu
