// How the OpenMP runtime's idle threads wait, chosen before the runtime starts.
//
// libgomp reads OMP_WAIT_POLICY and GOMP_SPINCOUNT once, while it is loaded, before main() runs.
// Its default spins for a long while at every barrier: on an idle machine that saves a wake-up,
// but when another process wants a core, a spinning thread takes the time that the thread it
// waits for needs, and throughput collapses (measured in BENCHMARKS.md, "Busy machines"). So when
// the user has set neither variable, the CLI sets the wait policy and starts itself again, once.
#pragma once

namespace switchyard::cli {

// Returns only when the environment already says how to wait (set by the user, or by the earlier
// start) or when starting again failed; otherwise replaces the process with itself under the
// chosen policy.
void ensure_openmp_wait_policy(char** argv);

}  // namespace switchyard::cli
