// Time of the collectives a data- or tensor-parallel step needs, from the ring formulas.
//
// A ring all-reduce of S bytes over n participants sends 2 (n - 1) / n * S bytes out of every
// participant (a reduce-scatter then an all-gather, each (n - 1) / n * S), in 2 (n - 1) steps, so
// it takes 2 (n - 1) / n * S / B + 2 (n - 1) * latency with B the per-participant unidirectional
// bandwidth. ZeRO-1's reduce-scatter of gradients plus all-gather of parameters moves the same
// bytes.
#pragma once

#include <cstdint>

namespace switchyard::plan {

// Seconds for a ring all-reduce of `bytes` over `n` participants, each sending at
// `bytes_per_second`, with `latency_s` per ring step. Zero for n == 1.
double ring_allreduce_seconds(double bytes, int64_t n, double bytes_per_second,
                              double latency_s = 0);
// Seconds for a ring reduce-scatter or all-gather (half an all-reduce).
double ring_reduce_scatter_seconds(double bytes, int64_t n, double bytes_per_second,
                                   double latency_s = 0);

// A hierarchical all-reduce across `instances` instances of `per_instance` participants each:
// reduce-scatter inside each instance (chip-to-chip links), all-reduce of each 1/per_instance shard
// across instances (each participant gets 1/per_instance of the instance's network), all-gather
// inside the instance.
struct HierarchicalLinks {
  double intra_bytes_per_second = 0;  // per participant, one direction, inside an instance
  double inter_bytes_per_second = 0;  // per participant, one direction, between instances
  double intra_latency_s = 0;
  double inter_latency_s = 0;
};
double hierarchical_allreduce_seconds(double bytes, int64_t per_instance, int64_t instances,
                                      const HierarchicalLinks& links);

}  // namespace switchyard::plan
