// A shared bandwidth (the core's share of HBM) booked in fixed time buckets.
//
// Transfers are booked in program order but may start at any simulated time; buckets let a
// transfer that starts early use bandwidth that later-starting transfers left free, which a
// single "free at" time could not. Within a bucket, bandwidth is first come, first served.
#pragma once

#include <cstddef>
#include <vector>

namespace switchyard::neuron {

class BandwidthLedger {
 public:
  // `bytes_per_ns` of total bandwidth, booked in buckets of `bucket_ns`.
  BandwidthLedger(double bytes_per_ns, double bucket_ns);

  // Books `bytes` for a transfer that starts at `start_ns` and can itself move at most
  // `rate_bytes_per_ns`; returns when its last byte has moved.
  double book(double start_ns, double bytes, double rate_bytes_per_ns);

  // Drops the bookings of buckets that end before `ns`, when no transfer can start before it any
  // more (a fence), so a long run keeps a bounded ledger.
  void forget_before(double ns);

 private:
  double capacity_per_bucket_;
  double bucket_ns_;
  size_t first_bucket_ = 0;   // bucket number of used_[0]
  std::vector<double> used_;  // bytes booked per bucket, from first_bucket_ on
};

}  // namespace switchyard::neuron
