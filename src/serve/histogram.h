// A Prometheus histogram: counts of observations at or below each bucket's upper bound, their
// count and their sum. Thread-safe: handlers observe while /metrics reads.
#pragma once

#include <cstdint>
#include <mutex>
#include <vector>

namespace switchyard::serve {

class Histogram {
 public:
  // `upper_bounds` ascending; a last bucket (+Inf) holds everything.
  explicit Histogram(std::vector<double> upper_bounds);

  void observe(double value);

  struct Snapshot {
    std::vector<double> upper_bounds;
    std::vector<uint64_t> cumulative;  // observations <= each bound (Prometheus buckets are cumulative)
    uint64_t count = 0;
    double sum = 0;
  };
  Snapshot snapshot() const;

 private:
  mutable std::mutex mutex_;
  std::vector<double> upper_bounds_;
  std::vector<uint64_t> counts_;  // per bucket, not cumulative; one more than the bounds
  double sum_ = 0;
};

}  // namespace switchyard::serve
