#include "client/simulated_throughput.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "client/prometheus_text.h"

namespace switchyard::client {

std::optional<SimulatedCounters> read_simulated_counters(std::string_view metrics_page) {
  SimulatedCounters c;
  bool simulated = false;
  for (const MetricSample& s : parse_prometheus_text(metrics_page)) {
    if (!std::isfinite(s.value)) continue;
    if (s.name == "switchyard:simulated_seconds_total") {
      simulated = true;
      c.seconds += s.value;
    } else if (s.name == "switchyard:generation_tokens_total") {
      c.generation_tokens += s.value;
    } else if (s.name == "switchyard:num_requests_running" || s.name == "switchyard:num_requests_waiting") {
      c.requests_in_engine += s.value;
    } else if (s.name == "switchyard:simulated_device_info") {
      const auto device = s.labels.find("device");
      if (device != s.labels.end()) c.device = device->second;
      const auto cores = s.labels.find("cores_per_chip");
      if (cores != s.labels.end()) {
        try {
          c.cores_per_chip = std::max(0, std::stoi(cores->second));
        } catch (const std::exception&) {
          c.cores_per_chip = 0;
        }
      }
    }
  }
  if (!simulated) return std::nullopt;
  return c;
}

std::optional<SimulatedThroughput> simulated_throughput(const SimulatedCounters& before,
                                                        const SimulatedCounters& after) {
  const double seconds = after.seconds - before.seconds;
  if (!(seconds > 0)) return std::nullopt;
  SimulatedThroughput t;
  t.device = after.device;
  t.cores_per_chip = after.cores_per_chip;
  t.seconds = seconds;
  t.output_tokens = std::lround(after.generation_tokens - before.generation_tokens);
  t.tokens_per_s_per_core = static_cast<double>(t.output_tokens) / seconds;
  t.tokens_per_s_per_chip = t.tokens_per_s_per_core * t.cores_per_chip;
  return t;
}

}  // namespace switchyard::client
