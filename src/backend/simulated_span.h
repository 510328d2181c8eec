// What a span of work cost on a simulator backend: the difference of two SimulationReports,
// put in the terms people compare chips by (time per step, tokens/s per core and per chip,
// engine utilisation and the busiest engine).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "backend/backend.h"

namespace switchyard::backend {

struct SimulatedSpan {
  double ms = 0;
  double tokens_per_s_per_core = 0;
  // Every core of the chip running its own copy of the same work (data parallel).
  double tokens_per_s_per_chip = 0;
  int cores_per_chip = 1;
  struct Engine {
    std::string name;
    double busy_ms = 0;
    double utilization = 0;  // busy / span
  };
  // TensorE, VectorE, ScalarE, GpSimd, then "DMA" (the queues' busy time averaged over queues).
  std::vector<Engine> engines;
  std::string busiest;     // the engine with the highest utilisation
  // What bounds the span: "HBM bandwidth" (at least kHbmBound of the core's share of the chip's
  // peak), else the busiest engine when it is busy at least kEngineBound of the span ("VectorE +
  // GpSimd" where the two share an SBUF port and so take turns: their busy times add), else
  // "latency" (dependent instructions waiting on each other, DMA latency, waits for other cores).
  std::string bottleneck;
  double hbm_gbps = 0;
  double tflops = 0;
  double percent_of_peak = 0;
  int64_t instructions = 0;  // simulated instructions issued in the span
  // Ops the simulator ran on the host during the span (no tile program for them, or not in the
  // form it handles): their work is not in `ms`. Name and calls.
  std::vector<std::pair<std::string, int64_t>> unsimulated_ops;
};

inline constexpr double kHbmBound = 0.7, kEngineBound = 0.6;

SimulatedSpan simulated_span(const SimulationReport& before, const SimulationReport& after,
                             double tokens);

// Measures spans of work on `backend`; does nothing on real devices.
class SimulatedClock {
 public:
  explicit SimulatedClock(const Backend& backend);
  bool active() const { return start_.has_value(); }
  // The span since construction or the last restart(); nullopt on real devices.
  std::optional<SimulatedSpan> lap(double tokens) const;
  void restart();

 private:
  const Backend& backend_;
  std::optional<SimulationReport> start_;
};

// "simulated trn2: 12.34 ms/step, 20747 tokens/s per core, 165976 per chip (8 cores); TensorE 41%,
// VectorE 22%, ..., bound by DMA", then, when some ops ran on the host, "; not simulated (ran on
// the host): paged_attention x12, ...".
std::string describe_span(const SimulatedSpan& span, const SimulationReport& report,
                          const char* unit);
// "; not simulated (ran on the host): paged_attention x12, ..." for ops that ran on the host, or
// "" when there were none.
std::string describe_unsimulated(const std::vector<std::pair<std::string, int64_t>>& ops);

}  // namespace switchyard::backend
