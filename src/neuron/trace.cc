#include "neuron/trace.h"

#include <fmt/format.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "neuron/isa.h"

namespace switchyard::neuron {

void Trace::write(const std::string& path, const CoreConfig& config,
                  const KernelContext& kernels) const {
  nlohmann::json events = nlohmann::json::array();
  int tracks = kComputeEngines + config.dma_queues + 1;
  for (int t = 0; t < tracks; ++t) {
    std::string name;
    if (t < kComputeEngines) {
      name = engine_name(static_cast<Engine>(t));
    } else if (t < kComputeEngines + config.dma_queues) {
      name = fmt::format("DMA queue {}", t - kComputeEngines);
    } else {
      name = "TensorE LoadStationary";
    }
    events.push_back(
        {{"ph", "M"}, {"name", "thread_name"}, {"pid", 0}, {"tid", t}, {"args", {{"name", name}}}});
    events.push_back({{"ph", "M"},
                      {"name", "thread_sort_index"},
                      {"pid", 0},
                      {"tid", t},
                      {"args", {{"sort_index", t}}}});
  }
  events.push_back({{"ph", "M"},
                    {"name", "process_name"},
                    {"pid", 0},
                    {"args", {{"name", fmt::format("{} {}", config.target, config.core_name)}}}});
  if (!collectives_.empty()) {
    events.push_back({{"ph", "M"}, {"name", "thread_name"}, {"pid", 0}, {"tid", tracks},
                      {"args", {{"name", "collectives (simulated interconnect)"}}}});
    events.push_back({{"ph", "M"}, {"name", "thread_sort_index"}, {"pid", 0}, {"tid", tracks},
                      {"args", {{"sort_index", tracks}}}});
    for (const Collective& c : collectives_) {
      events.push_back({{"ph", "X"}, {"name", c.name}, {"cat", "collective"}, {"pid", 0},
                        {"tid", tracks}, {"ts", c.start_ns / 1e3},
                        {"dur", (c.end_ns - c.start_ns) / 1e3}});
    }
  }
  for (const Event& e : events_) {
    const std::string& kernel = kernels.name_of(e.kernel);
    events.push_back({{"ph", "X"},
                      {"name", fmt::format("{}.{}", kernel, e.op)},
                      {"cat", kernel},
                      {"pid", 0},
                      {"tid", e.track},
                      {"ts", e.start_ns / 1e3},
                      {"dur", (e.end_ns - e.start_ns) / 1e3}});
  }
  nlohmann::json doc = {{"traceEvents", events}, {"displayTimeUnit", "ns"}};
  std::FILE* f = std::fopen(path.c_str(), "wb");
  require(f != nullptr, "cannot open trace file '{}' for writing", path);
  std::string text = doc.dump();
  size_t written = std::fwrite(text.data(), 1, text.size(), f);
  int closed = std::fclose(f);
  require(written == text.size() && closed == 0, "failed writing trace file '{}'", path);
}

}  // namespace switchyard::neuron
