// The serving planner: for each chip, the cheapest number of instances that serves a request load
// within a time-to-first-token and a time-per-output-token target, with the batch, tensor-parallel
// degree and replicas it assumes, $ per million output tokens and where its step times come from.
//
// For each instance type holding the chip (or, for a chip no priced instance holds, tensor-parallel
// groups of up to `unpriced_max_tensor_parallel` chips) and each tensor-parallel degree t (a power
// of two dividing the instance's chips, the heads and the key/value heads) whose weights and cache
// fit: the batch is the largest that meets the TPOT target and fits in memory (at most
// `max_batch`), then the replicas are the fewest that carry the load with the TTFT target met
// (plan/serving_replica.h). Tensor parallelism is needed where the weights and the cache do not fit
// one chip; larger degrees are tried too, since they shorten the step, and kept when cheaper. The
// cheapest per chip wins (ties: fewer chips, then the smaller degree). Targets a chip cannot meet
// are that chip's row (status, why), not an error.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "plan/catalog.h"
#include "plan/serving_evidence.h"
#include "plan/serving_mix.h"
#include "plan/serving_model.h"

namespace switchyard::plan {

struct ServeRequest {
  ModelShape shape;  // shape.name names the model (step-time files match on it)
  RequestMix mix{{{1, 1, 1}}};
  double requests_per_s = 0;
  double ttft_s = 0, tpot_s = 0;  // targets (means)
  ServingPrecision precision;
  std::vector<std::string> chips;  // empty: every chip in the catalog
  int64_t max_chips = 1024;
  int64_t max_batch = 1024;  // vLLM's default max-num-seqs on large-memory GPUs
  int64_t unpriced_max_tensor_parallel = 8;
  double memory_fraction = 0.9;
  double step_overhead_s = 5e-4;
  double link_latency_s = 5e-6;
  double assumed_efficiency = 0.35;
  std::vector<StepTimeTable> step_times;
};

enum class ServeStatus {
  kPlanned,        // meets the load and both targets on a priced instance
  kNoPrice,        // meets them, but no priced instance holds the chip ($ unknown)
  kMissesLatency,  // fits, but no batch and degree meets the TPOT or TTFT target
  kOutOfMemory,    // the weights and one sequence's cache do not fit at any degree
  kOverMaxChips    // meets the targets only with more than --max-chips chips
};
// "planned", "no-price", "misses-latency", "out-of-memory", "over-max-chips".
const char* serve_status_name(ServeStatus status);

// One configuration: replicas of `tensor_parallel` chips, each running `batch` sequences.
struct ServePoint {
  int64_t tensor_parallel = 1, batch = 0, replicas = 0, chips = 0, instances = 0;
  double step_s = 0, tpot_s = 0, ttft_s = 0, prefill_s = 0, slot_wait_s = 0, prefill_wait_s = 0;
  double utilisation = 0;
  double capacity_tokens_per_s_per_chip = 0;  // output tokens/s per chip at this batch, saturated
  double load_tokens_per_s_per_chip = 0;      // output tokens/s per chip at the requested load
  double memory_per_chip = 0;                 // bytes
  double price_per_hour = 0, dollars_per_million = 0;  // NaN without a priced instance
  bool meets_tpot = false, timed = false;  // timed: the decode step came from a step-time table
};

struct ServeRow {
  std::string chip, instance;  // instance "-" where no priced instance holds the chip
  int64_t chips_per_instance = 0;
  ServeStatus status = ServeStatus::kOutOfMemory;
  std::string why_not;
  ServePoint plan;                // for kPlanned and kNoPrice
  std::vector<ServePoint> curve;  // batches 1, 2, 4, ... at the plan's degree, for the chart
  EvidenceKind evidence = EvidenceKind::kRoofline;
  std::vector<std::string> evidence_source_chips;
  std::string evidence_detail, weight_format;
  double efficiency = 0;
  double memory_capacity = 0, memory_usable = 0;  // bytes per chip
  bool cheapest = false;

  bool meets_targets() const {
    return status == ServeStatus::kPlanned || status == ServeStatus::kNoPrice;
  }
  std::string evidence_label() const {
    return plan::evidence_label(evidence, evidence_source_chips);
  }
};

// One row per chip: planned rows first (cheapest first), then unpriced ones that meet the targets
// (fewest chips first), then the rest by chip. Throws Error for invalid requests (non-positive or
// non-finite load, targets or lengths; a request longer than the model's context; unknown chips).
std::vector<ServeRow> make_serving_plan(const Catalog& catalog, const ServeRequest& request);

}  // namespace switchyard::plan
