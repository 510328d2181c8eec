// A shared bandwidth (the core's share of HBM) booked in fixed time buckets.
//
// Transfers are booked in program order but may start at any simulated time; buckets let a
// transfer that starts early use bandwidth that later-starting transfers left free, which a
// single "free at" time could not. Within a bucket, bandwidth is first come, first served.
#pragma once

#include <vector>

namespace switchyard::neuron {

class BandwidthLedger {
 public:
  // `bytes_per_ns` of total bandwidth, booked in buckets of `bucket_ns`.
  BandwidthLedger(double bytes_per_ns, double bucket_ns);

  // Books `bytes` for a transfer that starts at `start_ns` and can itself move at most
  // `rate_bytes_per_ns`; returns when its last byte has moved.
  double book(double start_ns, double bytes, double rate_bytes_per_ns);

 private:
  double capacity_per_bucket_;
  double bucket_ns_;
  std::vector<double> used_;  // bytes booked per bucket
};

}  // namespace switchyard::neuron
