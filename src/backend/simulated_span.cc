#include "backend/simulated_span.h"

#include <fmt/format.h>

#include "core/error.h"

namespace switchyard::backend {

SimulatedSpan simulated_span(const SimulationReport& before, const SimulationReport& after,
                             double tokens) {
  require(before.engines.size() == after.engines.size(),
          "simulation reports of different devices cannot be compared");
  SimulatedSpan span;
  const double ns = after.total_ns - before.total_ns;
  span.ms = ns / 1e6;
  span.cores_per_chip = after.cores_per_chip;
  span.instructions = after.instructions - before.instructions;
  if (ns > 0) {
    span.tokens_per_s_per_core = tokens / (ns * 1e-9);
    span.tokens_per_s_per_chip = span.tokens_per_s_per_core * after.cores_per_chip;
    span.hbm_gbps = (after.hbm_bytes - before.hbm_bytes) / ns;
    span.tflops = (after.matmul_flops - before.matmul_flops) / ns / 1e3;
    if (after.peak_tflops > 0) span.percent_of_peak = 100.0 * span.tflops / after.peak_tflops;
  }
  double dma_busy = 0;
  int queues = 0;
  for (size_t i = 0; i < after.engines.size(); ++i) {
    const double busy = after.engines[i].busy_ns - before.engines[i].busy_ns;
    if (after.engines[i].name.rfind("DMA", 0) == 0) {
      dma_busy += busy;
      ++queues;
      continue;
    }
    span.engines.push_back({after.engines[i].name, busy / 1e6, ns > 0 ? busy / ns : 0});
  }
  if (queues > 0) {
    span.engines.push_back({"DMA", dma_busy / queues / 1e6, ns > 0 ? dma_busy / queues / ns : 0});
  }
  for (const auto& [name, calls] : after.unsimulated_ops) {
    int64_t earlier = 0;
    for (const auto& [before_name, before_calls] : before.unsimulated_ops) {
      if (before_name == name) earlier = before_calls;
    }
    if (calls > earlier) span.unsimulated_ops.emplace_back(name, calls - earlier);
  }
  double best = -1, shared_port = 0;
  for (const SimulatedSpan::Engine& e : span.engines) {
    if (e.name == "VectorE" || e.name == "GpSimd") shared_port += e.utilization;
    if (e.utilization > best) {
      best = e.utilization;
      span.busiest = e.name;
    }
  }
  if (after.shared_sbuf_port && shared_port > best) {
    best = shared_port;
    span.busiest = "VectorE + GpSimd";
  }
  if (after.peak_hbm_gbps > 0 && span.hbm_gbps >= kHbmBound * after.peak_hbm_gbps) {
    span.bottleneck = "HBM bandwidth";
  } else {
    span.bottleneck = best >= kEngineBound ? span.busiest : "latency";
  }
  return span;
}

SimulatedClock::SimulatedClock(const Backend& backend)
    : backend_(backend), start_(simulation_report(backend)) {}

std::optional<SimulatedSpan> SimulatedClock::lap(double tokens) const {
  if (!start_) return std::nullopt;
  return simulated_span(*start_, *simulation_report(backend_), tokens);
}

void SimulatedClock::restart() { start_ = simulation_report(backend_); }

std::string describe_span(const SimulatedSpan& span, const SimulationReport& report,
                          const char* unit) {
  std::string text = fmt::format(
      "simulated {} {}: {:.3f} ms/{}, {:.0f} tokens/s per core, {:.0f} per chip ({} cores); ",
      report.target, report.core, span.ms, unit, span.tokens_per_s_per_core,
      span.tokens_per_s_per_chip, span.cores_per_chip);
  for (size_t i = 0; i < span.engines.size(); ++i) {
    text += fmt::format("{}{} {:.0f}%", i ? ", " : "", span.engines[i].name,
                        100 * span.engines[i].utilization);
  }
  text += fmt::format("; busiest: {}; {:.1f} TFLOPS ({:.1f}% of peak), HBM {:.0f} GB/s",
                      span.busiest, span.tflops, span.percent_of_peak, span.hbm_gbps);
  if (report.peak_hbm_gbps > 0) {
    text += fmt::format(" ({:.0f}% of the core's share)", 100 * span.hbm_gbps / report.peak_hbm_gbps);
  }
  text += fmt::format("; bound by {}", span.bottleneck);
  return text + describe_unsimulated(span.unsimulated_ops);
}

std::string describe_unsimulated(const std::vector<std::pair<std::string, int64_t>>& ops) {
  std::string text;
  for (size_t i = 0; i < ops.size(); ++i) {
    text += fmt::format("{}{} x{}", i ? ", " : "; not simulated (ran on the host): ", ops[i].first,
                        ops[i].second);
  }
  return text;
}

}  // namespace switchyard::backend
