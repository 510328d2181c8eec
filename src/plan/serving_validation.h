// `switchyard plan validate`, serving half: the serving planner's output tokens/s per chip beside
// published serving runs (data/catalog/published.json, "serving"), and the mean absolute
// percentage error.
//
// A run is a model on a chip at a tensor-parallel degree, prompt and output lengths, precision and
// either a fixed concurrency (the decode batch) or the maximum throughput (the planner then takes
// the largest batch that fits in memory, at most `max_batch`). The prediction is the planner's
// saturated output tokens/s per chip at that batch: batch / (TPOT x degree), with the chip family's
// serving efficiency from the chip catalog. Each run also implies an efficiency (the one at which
// the model would match it exactly: TPOT is affine in 1 / efficiency); the families' catalog
// efficiencies are the means of those of their runs, so the report also gives the leave-one-out
// prediction from the other runs of the family. Runs marked "calibrates": false (say why in their
// note) are predicted but do not enter the means; nor do runs whose fixed costs (overheads and
// tensor-parallel latency) alone exceed their measured step, which imply no efficiency.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "plan/catalog.h"

namespace switchyard::plan {

struct PublishedServing {
  std::string name, model, chip;
  int64_t chips = 1, tensor_parallel = 1;
  int64_t concurrency = 0;  // 0: maximum throughput
  int64_t prompt_tokens = 0, output_tokens = 0;
  std::string precision = "mxfp4", kv_cache = "bf16";
  double output_tokens_per_s_per_chip = 0;
  bool reserves_whole_requests = false;  // the cache scheduler reserves prompt + output
  bool calibrates = true;
  std::string software, source, date, note;
  std::string explanation;  // why the planner misses it, for runs off by more than 25%
};

// {"serving": [{"name", "model" (a preset), "chip", "chips", "tensor_parallel",
//   "concurrency" | "max_throughput": true, "prompt_tokens", "output_tokens", "precision",
//   "kv_cache", "output_tokens_per_s_per_chip" | "output_tokens_per_s" (the whole run),
//   "cache_reservation"?: "whole-request" | "as-used" (default), "calibrates"?, "software",
//   "source", "date", "note"?, "explanation"?}]}. Throws Error naming
// the run and field.
std::vector<PublishedServing> parse_published_serving(const nlohmann::json& json,
                                                      const std::string& what);

struct ServingValidationRow {
  PublishedServing run;
  int64_t batch = 0;      // per replica
  double efficiency = 0;  // the one the prediction used
  std::string evidence;   // its kind: published, borrowed:X, roofline
  double predicted = 0, error_pct = 0;
  double implied_efficiency = 0;  // NaN when the run implies none
  bool has_loo = false;
  double loo_predicted = 0, loo_error_pct = 0;
};

struct ServingValidationReport {
  std::vector<ServingValidationRow> rows;
  double mape = 0, loo_mape = 0;
  int families = 0;
  double threshold_pct = 25;  // rows above it need an explanation
};

struct ServingValidationSettings {
  double step_overhead_s = 5e-4;
  double link_latency_s = 5e-6;
  double memory_fraction = 0.9;
  int64_t max_batch = 1024;
  double assumed_efficiency = 0.35;
};

ServingValidationReport validate_serving(const Catalog& catalog,
                                         const std::vector<PublishedServing>& runs,
                                         const ServingValidationSettings& settings = {});
std::string format_serving_validation(const ServingValidationReport& report);
nlohmann::json serving_validation_to_json(const ServingValidationReport& report);

}  // namespace switchyard::plan
