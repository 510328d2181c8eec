// Lowers the CPU backend's OpenMP thread count while other processes keep this process's CPUs
// busy, and raises it again when they stop.
//
// OpenMP's threads meet at the end of every parallel loop. On an idle machine they spin there for
// a moment, which is the fastest way to start the next loop; but when another process wants a
// core, one of our threads runs only in that core's spare turns, every loop waits for it, and its
// partner's spinning takes the time it needs: throughput collapses. With no more threads than
// free cores nothing waits. So the CPU backend's heavy ops call adapt_threads(), which at most
// every kSampleSeconds reads how busy the CPUs of the affinity mask were (/proc/stat), subtracts
// this process's own CPU time (getrusage), and sets the thread count to the cores left over: at
// least one, at most the budget (thread_budget.h), with a margin against flapping. It lowers the
// count only for load seen in two samples in a row: a burst shorter than that (a client process
// starting up and reading its dataset, a shell command) would otherwise halve a memory-bound
// decode for a whole sample. It raises the count again at the first clearly quiet sample. A
// budget the user fixed with OMP_NUM_THREADS is left alone.
#pragma once

#include <string>
#include <vector>

namespace switchyard::backend::cpu {

inline constexpr double kSampleSeconds = 0.2;

// CPU time, in seconds, of the given CPUs busy (user, nice, system, irq, softirq and the
// hypervisor's steal) and of this process, at wall time `wall`.
struct CpuTimes {
  double busy = 0, self = 0, wall = 0;
};
CpuTimes read_cpu_times(const std::vector<int>& cpus);
// Busy time per CPU from /proc/stat's contents, seconds per line "cpuN ...", in CPU order.
std::vector<double> parse_proc_stat_busy(const std::string& proc_stat, double ticks_per_second);
// Cores that other processes used between two samples (never negative).
double other_cores(const CpuTimes& before, const CpuTimes& after);
// The thread count for a budget of `budget` threads when others use `other` cores, moving from
// `current` only when the free cores clearly call for it.
int adapted_threads(int budget, int current, double other);
// The next thread count from the last two samples' other cores: lowered only for load both saw.
int next_threads(int budget, int current, double previous_other, double other);

// Samples when due and applies the adapted count (see the header comment). Cheap between samples.
// The first sample is taken kSampleSeconds after the first call; until then every thread runs.
void adapt_threads();

// What the adapter has done in this process so far, for benchmarks to report beside their figures:
// the budget, whether it adapts at all, the samples taken, how many of them set fewer threads than
// the budget, and the fewest set.
struct AdapterHistory {
  int budget = 1;
  bool enabled = false;
  int samples = 0, reduced = 0, fewest = 1;
};
AdapterHistory adapter_history();

}  // namespace switchyard::backend::cpu
