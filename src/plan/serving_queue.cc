#include "plan/serving_queue.h"

#include <limits>

#include "core/error.h"

namespace switchyard::plan {

double erlang_c(int64_t servers, double erlangs) {
  require(servers >= 1, "queue needs at least one server, got {}", servers);
  require(erlangs >= 0 && erlangs < static_cast<double>(servers),
          "queue offered load {} must be below its {} servers", erlangs, servers);
  // Erlang B by its recurrence (stable for thousands of servers), then C from B.
  double b = 1.0;
  for (int64_t k = 1; k <= servers; ++k) b = erlangs * b / (static_cast<double>(k) + erlangs * b);
  const double c = static_cast<double>(servers);
  return c * b / (c - erlangs * (1.0 - b));
}

double mdc_wait_seconds(int64_t servers, double arrivals_per_s, double service_s) {
  const double erlangs = arrivals_per_s * service_s;
  const double c = static_cast<double>(servers);
  if (erlangs >= c) return std::numeric_limits<double>::infinity();
  const double mmc = erlang_c(servers, erlangs) * service_s / (c - erlangs);
  return mmc / 2.0;
}

double md1_wait_seconds(double arrivals_per_s, double service_s) {
  const double rho = arrivals_per_s * service_s;
  if (rho >= 1.0) return std::numeric_limits<double>::infinity();
  return rho * service_s / (2.0 * (1.0 - rho));
}

}  // namespace switchyard::plan
