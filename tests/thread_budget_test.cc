// The CPU thread budget: cgroup parsing and the choice between affinity, quota and OMP_NUM_THREADS.
#include "backend/cpu/thread_budget.h"
#include "backend/cpu/thread_adapter.h"

#include <gtest/gtest.h>

namespace switchyard::backend::cpu {
namespace {

TEST(ThreadBudget, ReadsCgroupV2CpuMax) {
  EXPECT_FALSE(cgroup_v2_quota("max 100000\n").has_value());
  EXPECT_DOUBLE_EQ(*cgroup_v2_quota("150000 100000\n"), 1.5);
  EXPECT_DOUBLE_EQ(*cgroup_v2_quota("200000 50000"), 4.0);
  EXPECT_FALSE(cgroup_v2_quota("").has_value());
  EXPECT_FALSE(cgroup_v2_quota("garbage").has_value());
}

TEST(ThreadBudget, ReadsCgroupV1Quota) {
  EXPECT_FALSE(cgroup_v1_quota("-1\n", "100000\n").has_value());
  EXPECT_DOUBLE_EQ(*cgroup_v1_quota("250000\n", "100000\n"), 2.5);
  EXPECT_FALSE(cgroup_v1_quota("", "").has_value());
}

TEST(ThreadBudget, FindsTheControllersCgroup) {
  const char* hybrid =
      "9:name=systemd:/user.slice\n4:memory:/box/7\n2:cpu,cpuacct:/box/7\n0::/user.slice\n";
  EXPECT_EQ(*cgroup_path(hybrid, "cpu"), "/box/7");
  EXPECT_EQ(*cgroup_path(hybrid, "cpuacct"), "/box/7");
  EXPECT_EQ(*cgroup_path(hybrid, ""), "/user.slice");
  EXPECT_FALSE(cgroup_path(hybrid, "cpuset").has_value());
  EXPECT_EQ(*cgroup_path("0::/\n", ""), "/");
}

TEST(ThreadBudget, TakesTheTightestLimit) {
  CpuLimits limits;
  limits.online = 16;
  limits.affinity = 16;
  ThreadBudget b = decide_threads(limits);
  EXPECT_EQ(b.threads, 16);
  EXPECT_EQ(b.reason, "16 CPUs online");

  limits.affinity = 4;
  b = decide_threads(limits);
  EXPECT_EQ(b.threads, 4);
  EXPECT_EQ(b.reason, "4 of 16 CPUs in the affinity mask");

  // A quota of 2.5 CPUs allows two whole threads: a third would be throttled.
  limits.quota = 2.5;
  b = decide_threads(limits);
  EXPECT_EQ(b.threads, 2);
  EXPECT_EQ(b.reason, "cgroup CPU quota of 2.5 CPUs");

  // Under one CPU still runs one thread; a quota above the mask changes nothing.
  limits.quota = 0.5;
  EXPECT_EQ(decide_threads(limits).threads, 1);
  limits.quota = 8;
  EXPECT_EQ(decide_threads(limits).threads, 4);

  // The user's OMP_NUM_THREADS wins.
  limits.omp_num_threads = 3;
  b = decide_threads(limits);
  EXPECT_EQ(b.threads, 3);
  EXPECT_EQ(b.reason, "OMP_NUM_THREADS=3");
}

TEST(ThreadBudget, ReadsThisProcess) {
  const CpuLimits limits = read_cpu_limits();
  EXPECT_GE(limits.online, 1);
  EXPECT_GE(limits.affinity, 1);
  EXPECT_LE(limits.affinity, limits.online);
  if (limits.quota) {
    EXPECT_GT(*limits.quota, 0.0);
  }
  const ThreadBudget applied = apply_thread_budget();
  EXPECT_GE(applied.threads, 1);
  EXPECT_EQ(current_thread_budget().threads, applied.threads);
}

TEST(ThreadAdapter, ReadsEachCpusBusyTime) {
  const char* stat =
      "cpu  300 0 100 900 5 0 2 0 0 0\n"
      "cpu0 100 0 50 400 1 0 1 0 0 0\n"
      "cpu1 200 10 50 500 4 3 1 7 0 0\n"
      "intr 1 2 3\nctxt 99\n";
  const std::vector<double> busy = parse_proc_stat_busy(stat, 100.0);
  ASSERT_EQ(busy.size(), 2u);
  EXPECT_DOUBLE_EQ(busy[0], (100 + 0 + 50 + 0 + 1 + 0) / 100.0);
  EXPECT_DOUBLE_EQ(busy[1], (200 + 10 + 50 + 3 + 1 + 7) / 100.0);  // steal counts as taken
}

TEST(ThreadAdapter, OthersAreTheBusyTimeThatIsNotOurs) {
  const CpuTimes before{.busy = 10.0, .self = 4.0, .wall = 100.0};
  const CpuTimes after{.busy = 10.8, .self = 4.3, .wall = 100.5};  // 1.6 cores busy, 0.6 ours
  EXPECT_NEAR(other_cores(before, after), 1.0, 1e-12);
  EXPECT_EQ(other_cores(after, after), 0.0);
  const CpuTimes odd{.busy = 10.0, .self = 4.5, .wall = 100.5};  // tick rounding: never negative
  EXPECT_EQ(other_cores(before, odd), 0.0);
}

TEST(ThreadAdapter, UsesTheFreeCoresWithAMarginAgainstFlapping) {
  // Two threads: one busy core elsewhere leaves one.
  EXPECT_EQ(adapted_threads(2, 2, 1.0), 1);
  EXPECT_EQ(adapted_threads(2, 2, 0.6), 1);
  EXPECT_EQ(adapted_threads(2, 2, 0.2), 2);   // a little noise changes nothing
  // Back up only when clearly free.
  EXPECT_EQ(adapted_threads(2, 1, 0.4), 1);
  EXPECT_EQ(adapted_threads(2, 1, 0.1), 2);
  // Never below one, never above the budget.
  EXPECT_EQ(adapted_threads(2, 1, 5.0), 1);
  EXPECT_EQ(adapted_threads(16, 4, 0.0), 16);
  EXPECT_EQ(adapted_threads(16, 16, 6.0), 10);
}

TEST(ThreadAdapter, LowersTheThreadsOnlyForLoadTwoSamplesInARowSaw) {
  // One busy sample (another process's short burst) leaves both threads.
  EXPECT_EQ(next_threads(2, 2, 0.0, 1.0), 2);
  // The same load in the next sample too: one thread.
  EXPECT_EQ(next_threads(2, 2, 1.0, 1.0), 1);
  // Lowered by the lesser of the two: a burst on top of lighter load counts as the lighter load.
  EXPECT_EQ(next_threads(16, 16, 2.0, 6.0), 14);
  // Back up at the first clearly quiet sample, and not for a dip the margin covers.
  EXPECT_EQ(next_threads(2, 1, 1.0, 0.1), 2);
  EXPECT_EQ(next_threads(2, 1, 1.0, 0.4), 1);
  // Staying down while the load lasts.
  EXPECT_EQ(next_threads(2, 1, 1.0, 1.0), 1);
}

}  // namespace
}  // namespace switchyard::backend::cpu
