#include "client/arrival_schedule.h"

#include <cmath>

#include "core/error.h"
#include "core/rng.h"

namespace switchyard::client {

std::vector<double> poisson_arrival_times(int count, double rate, uint64_t seed) {
  require(rate > 0, "the request rate must be positive (or inf), not {}", rate);
  require(count >= 0, "the number of requests must not be negative, not {}", count);
  std::vector<double> times(static_cast<size_t>(count), 0.0);
  if (std::isinf(rate)) return times;
  Rng rng(seed);
  double t = 0;
  for (int i = 1; i < count; ++i) {
    // A uniform draw in [0, 1) with 53 bits; 1 - u is in (0, 1], so its logarithm is finite.
    const double u = static_cast<double>(rng.next_u64() >> 11) * 0x1.0p-53;
    t += -std::log1p(-u) / rate;
    times[static_cast<size_t>(i)] = t;
  }
  return times;
}

}  // namespace switchyard::client
