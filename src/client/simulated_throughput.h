// The simulated throughput of a server on a simulator device, from its /metrics page scraped
// before and after a benchmark. Switchyard's server on a simulator device (trn1-sim, trn2-sim)
// counts the simulated seconds of its engine steps (docs/serving.md); over the same span its
// generated tokens give the simulated output tokens per second of one NeuronCore, and a chip's
// cores, each running such a copy, that many times as many per chip. A page without those series
// (a real device, another kind of server) gives nothing.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace switchyard::client {

// What one /metrics page says, summed over the models served.
struct SimulatedCounters {
  std::string device;            // "trn2-sim"; empty when the page names none
  int cores_per_chip = 0;        // 0 when the page does not say
  double seconds = 0;            // switchyard:simulated_seconds_total
  double generation_tokens = 0;  // switchyard:generation_tokens_total
  double requests_in_engine = 0;  // running and waiting
};

// nullopt when the page has no simulated time.
std::optional<SimulatedCounters> read_simulated_counters(std::string_view metrics_page);

struct SimulatedThroughput {
  std::string device;
  int cores_per_chip = 0;  // 0: unknown, and no per-chip figure
  double seconds = 0;      // simulated, between the scrapes
  long output_tokens = 0;  // generated between the scrapes, by the server's count
  double tokens_per_s_per_core = 0;
  double tokens_per_s_per_chip = 0;  // 0 when cores_per_chip is unknown
};

// Between two scrapes of the same server; nullopt when no simulated time passed between them.
std::optional<SimulatedThroughput> simulated_throughput(const SimulatedCounters& before,
                                                        const SimulatedCounters& after);

}  // namespace switchyard::client
