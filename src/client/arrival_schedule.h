// When each request of a serving benchmark is sent: a Poisson process at a given mean rate (the
// gaps between requests drawn from an exponential distribution), reproducible from a seed, as
// vLLM's benchmark sends them; or all at once for an infinite rate.
#pragma once

#include <cstdint>
#include <vector>

namespace switchyard::client {

// Seconds from the benchmark's start at which each of `count` requests is due: the first at 0, each
// next one an exponential gap of mean 1 / `rate` later. `rate` is requests per second, > 0;
// infinity gives all zeros. Throws Error for a rate that is not positive.
std::vector<double> poisson_arrival_times(int count, double rate, uint64_t seed);

}  // namespace switchyard::client
