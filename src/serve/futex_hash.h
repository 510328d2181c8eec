// Sizing this process's futex hash for a server's many waiting threads.
//
// Since Linux 6.17 a threaded process gets a private hash of futex wait queues, 16 buckets on a
// machine of up to 4 CPUs. The server parks hundreds of HTTP worker threads on one condition
// variable, all in one bucket, and every wake of a futex that hashes to the same bucket walks
// them. OpenMP's barriers wake a futex at every parallel loop of a decode step (about 300 a
// token); in 2 of 10 server starts measured (the bucket depends on where the barrier lands in
// memory) those wakes took 5-6% of the process's CPU time.
#pragma once

namespace switchyard::serve {

// Gives the private futex hash 16 buckets per waiting thread (`threads` of them; a power of two,
// at least 1024), so that a hot futex shares a bucket with the parked threads only by a rare
// chance. Returns the buckets now used, or 0 where the kernel has no private hash
// (before Linux 6.17: the shared global hash, sized by the CPU count, is used as before) or kept
// the global one.
int widen_futex_hash(int threads);

}  // namespace switchyard::serve
