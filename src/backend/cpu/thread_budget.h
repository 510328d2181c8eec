// How many OpenMP threads the CPU backend uses, and why.
//
// OpenMP's default is one thread per CPU in the affinity mask, which ignores a container's CPU quota:
// a process limited to 1.5 CPUs of a 16-CPU machine would run 16 threads that the kernel throttles,
// and every barrier would wait on a throttled thread. The budget is the smallest of the CPUs this
// process may run on, the whole CPUs its cgroup quota grants, and OMP_NUM_THREADS when the user set it.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace switchyard::backend::cpu {

struct CpuLimits {
  int online = 1;                     // CPUs the system has online
  int affinity = 1;                   // CPUs in this process's affinity mask
  std::optional<double> quota;        // CPUs granted by the cgroup quota (1.5 = 150 ms per 100 ms)
  std::optional<int> omp_num_threads; // OMP_NUM_THREADS, when set to a positive number
};

struct ThreadBudget {
  int threads = 1;
  std::string reason;  // e.g. "2 CPUs in the affinity mask", "cgroup quota of 1.5 CPUs"
};

// The cgroup-v2 cpu.max contents ("max 100000" or "150000 100000") as CPUs; nullopt when unlimited
// or unreadable.
std::optional<double> cgroup_v2_quota(std::string_view cpu_max);
// cgroup-v1 cpu.cfs_quota_us and cpu.cfs_period_us contents as CPUs; nullopt when the quota is -1.
std::optional<double> cgroup_v1_quota(std::string_view quota_us, std::string_view period_us);
// The path of this process's cgroup for `controller` ("" selects the cgroup-v2 line "0::/path") in
// /proc/self/cgroup's contents; nullopt when there is no such line.
std::optional<std::string> cgroup_path(std::string_view proc_self_cgroup, std::string_view controller);

// Reads the limits of the running process.
CpuLimits read_cpu_limits();
// The thread count the limits allow, with the reason that decided it.
ThreadBudget decide_threads(const CpuLimits& limits);
// Reads the limits, sets OpenMP's thread count to the budget and returns it. Called once, at start.
ThreadBudget apply_thread_budget();
// The budget applied by apply_thread_budget(), or OpenMP's own default when it has not run.
ThreadBudget current_thread_budget();

// How idle OpenMP threads wait, as the environment told the OpenMP runtime when it loaded
// ("passive", "active", "spin count 10000", or "OpenMP default").
std::string openmp_wait_policy();

}  // namespace switchyard::backend::cpu
