#include "neuron/bandwidth_ledger.h"

#include <algorithm>
#include <cmath>

namespace switchyard::neuron {

BandwidthLedger::BandwidthLedger(double bytes_per_ns, double bucket_ns)
    : capacity_per_bucket_(bytes_per_ns * bucket_ns), bucket_ns_(bucket_ns) {}

double BandwidthLedger::book(double start_ns, double bytes, double rate_bytes_per_ns) {
  double t = start_ns;
  double remaining = bytes;
  while (remaining > 0) {
    const size_t bucket = static_cast<size_t>(std::floor(t / bucket_ns_));
    // Transfers never start before the last forget_before() time; clamp against rounding.
    const size_t b = bucket < first_bucket_ ? 0 : bucket - first_bucket_;
    if (b >= used_.size()) used_.resize(std::max(b + 1, used_.size() * 2), 0.0);
    double bucket_end = static_cast<double>(first_bucket_ + b + 1) * bucket_ns_;
    double available = capacity_per_bucket_ - used_[b];
    // What this transfer can move in the rest of the bucket at its own rate.
    double own = rate_bytes_per_ns * (bucket_end - t);
    double moved = std::min({remaining, available, own});
    if (moved > 0) {
      used_[b] += moved;
      remaining -= moved;
      if (remaining <= 0) {
        // Finished inside this bucket: at its own rate, or later if the bucket was contended
        // (spread over the bucket in proportion to the share it got).
        double at_own_rate = t + moved / rate_bytes_per_ns;
        double share = used_[b] / capacity_per_bucket_;
        return std::max(at_own_rate,
                        static_cast<double>(first_bucket_ + b) * bucket_ns_ + share * bucket_ns_);
      }
    }
    t = bucket_end;
  }
  return t;
}

void BandwidthLedger::forget_before(double ns) {
  const size_t bucket = static_cast<size_t>(std::floor(ns / bucket_ns_));
  if (bucket <= first_bucket_) return;
  const size_t drop = std::min(bucket - first_bucket_, used_.size());
  used_.erase(used_.begin(), used_.begin() + static_cast<std::ptrdiff_t>(drop));
  first_bucket_ = bucket;
}

}  // namespace switchyard::neuron
