#include "plan/collectives.h"

#include "core/error.h"

namespace switchyard::plan {

double ring_reduce_scatter_seconds(double bytes, int64_t n, double bytes_per_second,
                                   double latency_s) {
  require(n >= 1, "collective needs at least one participant, got {}", n);
  require(bytes >= 0, "collective size must be >= 0 bytes, got {}", bytes);
  if (n == 1) return 0.0;
  require(bytes_per_second > 0, "collective bandwidth must be positive, got {}", bytes_per_second);
  const double steps = static_cast<double>(n - 1);
  return steps / static_cast<double>(n) * bytes / bytes_per_second + steps * latency_s;
}

double ring_allreduce_seconds(double bytes, int64_t n, double bytes_per_second, double latency_s) {
  return 2.0 * ring_reduce_scatter_seconds(bytes, n, bytes_per_second, latency_s);
}

double hierarchical_allreduce_seconds(double bytes, int64_t per_instance, int64_t instances,
                                      const HierarchicalLinks& links) {
  require(per_instance >= 1 && instances >= 1,
          "hierarchical all-reduce needs positive group sizes, got {} x {}", per_instance,
          instances);
  double intra =
      2.0 * ring_reduce_scatter_seconds(bytes, per_instance, links.intra_bytes_per_second,
                                        links.intra_latency_s);
  double inter = ring_allreduce_seconds(bytes / static_cast<double>(per_instance), instances,
                                        links.inter_bytes_per_second, links.inter_latency_s);
  return intra + inter;
}

}  // namespace switchyard::plan
