// Queueing delays for the time to first token. A replica holds `slots` sequences at once (its
// decode batch); a request waits for a free slot, then for the replica's prefill, then runs its own
// prefill. Arrivals are Poisson; service times are treated as deterministic (every request of the
// mix occupies its slot for the mix's mean output length).
//
//   slot wait     M/D/c, by the Allen-Cunneen approximation: the M/M/c wait (Erlang C) times
//                 (1 + C_s^2) / 2, with C_s = 0 for deterministic service, i.e. half of it;
//   prefill wait  M/D/1, Pollaczek-Khinchine: rho S / (2 (1 - rho)).
#pragma once

#include <cstdint>

namespace switchyard::plan {

// Probability that an arrival waits in an M/M/c queue with offered load `erlangs` = arrival rate
// x service time, for c = `servers`. Requires erlangs < servers.
double erlang_c(int64_t servers, double erlangs);
// Mean wait in queue of an M/D/c queue (Allen-Cunneen). Infinite at or above saturation.
double mdc_wait_seconds(int64_t servers, double arrivals_per_s, double service_s);
// Mean wait in queue of an M/D/1 queue. Infinite at or above saturation.
double md1_wait_seconds(double arrivals_per_s, double service_s);

}  // namespace switchyard::plan
