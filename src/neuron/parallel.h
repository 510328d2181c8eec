// Threading of the simulator's functional work: big instructions (and big host copies) spread
// their partitions over the OpenMP threads. Each partition's values are computed by one thread
// in the same order as without threads, so results never depend on the thread count.
#pragma once

#include <cstdint>

namespace switchyard::neuron {

// Instructions moving at least this many elements use every thread; smaller ones are not worth
// waking the threads for.
inline constexpr int64_t kThreadedElements = 32768;

// fn(p) for p in [0, partitions), threaded when `elements` (the whole instruction's) is big.
// Partitions are handed out in chunks as threads come free, not split in fixed halves: on a
// shared host one thread is often briefly descheduled, and the other then does its work instead
// of waiting for it at the barrier.
template <typename Fn>
void for_each_partition(int64_t partitions, int64_t elements, Fn&& fn) {
#pragma omp parallel for schedule(dynamic, 8) if (elements >= kThreadedElements)
  for (int64_t p = 0; p < partitions; ++p) fn(p);
}

}  // namespace switchyard::neuron
