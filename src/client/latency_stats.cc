#include "client/latency_stats.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace switchyard::client {

double percentile(const std::vector<double>& sorted, double p) {
  const double rank = p / 100.0 * static_cast<double>(sorted.size() - 1);
  const auto below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(below + 1, sorted.size() - 1);
  const double fraction = rank - static_cast<double>(below);
  return sorted[below] + fraction * (sorted[above] - sorted[below]);
}

Distribution describe(std::vector<double> values) {
  Distribution d;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  d.mean = d.median = d.p99 = d.std_dev = d.min = d.max = nan;
  d.count = values.size();
  if (values.empty()) return d;
  std::sort(values.begin(), values.end());
  double sum = 0;
  for (double v : values) sum += v;
  d.mean = sum / static_cast<double>(values.size());
  double squares = 0;
  for (double v : values) squares += (v - d.mean) * (v - d.mean);
  d.std_dev = std::sqrt(squares / static_cast<double>(values.size()));
  d.median = percentile(values, 50);
  d.p99 = percentile(values, 99);
  d.min = values.front();
  d.max = values.back();
  return d;
}

}  // namespace switchyard::client
