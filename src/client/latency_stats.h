// Summaries of a set of latencies: mean, median, 99th percentile and standard deviation, computed as
// NumPy computes them by default (linear interpolation between the two nearest ranks; population
// standard deviation), so the figures line up with those of vLLM's serving benchmark.
#pragma once

#include <cstddef>
#include <vector>

namespace switchyard::client {

struct Distribution {
  size_t count = 0;  // with no values the other fields are NaN
  double mean, median, p99, std_dev, min, max;
};

// The `p`th percentile (0 <= p <= 100) of `sorted` (ascending, not empty): the value at rank
// p / 100 * (n - 1), interpolated linearly between the two ranks around it.
double percentile(const std::vector<double>& sorted, double p);

Distribution describe(std::vector<double> values);

}  // namespace switchyard::client
