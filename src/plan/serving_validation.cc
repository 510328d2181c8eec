#include "plan/serving_validation.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "core/error.h"
#include "model/model_config.h"
#include "plan/serving_replica.h"

namespace switchyard::plan {

namespace {

using nlohmann::json;

std::string text(const json& o, const char* key, const std::string& where, bool required = true) {
  if (!o.contains(key)) {
    if (required) fail("{}: missing string field '{}'", where, key);
    return "";
  }
  if (!o[key].is_string()) fail("{}: field '{}' must be a string", where, key);
  return o[key].get<std::string>();
}

int64_t whole(const json& o, const char* key, const std::string& where) {
  if (!o.contains(key) || !o[key].is_number_integer() || o[key].get<int64_t>() <= 0) {
    fail("{}: field '{}' must be a positive integer", where, key);
  }
  return o[key].get<int64_t>();
}

double positive(const json& o, const char* key, const std::string& where) {
  const json& v = o.at(key);
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0) {
    fail("{}: field '{}' must be a positive number, got {}", where, key, v.dump());
  }
  return v.get<double>();
}

PublishedServing parse_run(const json& o, const std::string& at) {
  if (!o.is_object()) fail("{}: expected an object", at);
  PublishedServing run;
  run.name = text(o, "name", at);
  const std::string where = at + " (" + run.name + ")";
  run.model = text(o, "model", where);
  run.chip = text(o, "chip", where);
  run.chips = whole(o, "chips", where);
  run.tensor_parallel = whole(o, "tensor_parallel", where);
  require(run.chips % run.tensor_parallel == 0,
          "{}: 'chips' must be a multiple of 'tensor_parallel'", where);
  const bool max = o.contains("max_throughput") && o["max_throughput"] == true;
  require(max != o.contains("concurrency"),
          "{}: give exactly one of 'concurrency' and 'max_throughput': true", where);
  if (!max) run.concurrency = whole(o, "concurrency", where);
  run.prompt_tokens = whole(o, "prompt_tokens", where);
  run.output_tokens = whole(o, "output_tokens", where);
  run.precision = text(o, "precision", where);
  run.kv_cache = text(o, "kv_cache", where);
  const bool per_chip = o.contains("output_tokens_per_s_per_chip");
  require(per_chip != o.contains("output_tokens_per_s"),
          "{}: give exactly one of 'output_tokens_per_s_per_chip' and 'output_tokens_per_s'",
          where);
  run.output_tokens_per_s_per_chip =
      per_chip ? positive(o, "output_tokens_per_s_per_chip", where)
               : positive(o, "output_tokens_per_s", where) / static_cast<double>(run.chips);
  const std::string reservation = text(o, "cache_reservation", where, false);
  require(reservation.empty() || reservation == "whole-request" || reservation == "as-used",
          "{}: 'cache_reservation' must be \"whole-request\" or \"as-used\", got \"{}\"", where,
          reservation);
  run.reserves_whole_requests = reservation == "whole-request";
  if (o.contains("calibrates")) {
    require(o["calibrates"].is_boolean(), "{}: 'calibrates' must be true or false", where);
    run.calibrates = o["calibrates"].get<bool>();
  }
  run.software = text(o, "software", where);
  run.source = text(o, "source", where);
  run.date = text(o, "date", where);
  run.note = text(o, "note", where, false);
  run.explanation = text(o, "explanation", where, false);
  return run;
}

// The planner's model of one published run at a given efficiency.
struct RunModel {
  const PublishedServing& run;
  const ChipSpec& chip;
  ServedModel model;
  RequestMix mix;
  ServingValidationSettings settings;

  // Output tokens/s per chip at `efficiency`; `batch` receives the per-replica batch and `tpot` the
  // time per output token.
  double per_chip(double efficiency, int64_t* batch, double* tpot) const {
    ServingRate rate;
    rate.efficiency = efficiency;
    const ServingChip rates = serving_chip(chip, model.precision(), settings.link_latency_s);
    const ReplicaModel rep(model, rates, rate, mix, settings.step_overhead_s, run.tensor_parallel);
    const int64_t replicas = run.chips / run.tensor_parallel;
    int64_t b = run.concurrency > 0
                    ? std::max<int64_t>(1, (run.concurrency + replicas / 2) / replicas)
                    : std::min(settings.max_batch,
                               rep.memory_batch_limit(chip.memory_gib.value * 1024.0 * 1024.0 *
                                                          1024.0 * settings.memory_fraction,
                                                      run.reserves_whole_requests));
    require(b >= 1, "published serving run '{}': the model does not fit {} at TP={}", run.name,
            chip.name, run.tensor_parallel);
    *batch = b;
    *tpot = rep.tpot_s(b);
    return static_cast<double>(b) / (*tpot * static_cast<double>(run.tensor_parallel));
  }

  // The efficiency at which the model matches the run (TPOT = F + R / efficiency); NaN if none.
  double implied_efficiency() const {
    int64_t b = 0;
    double at_one = 0, at_half = 0;
    per_chip(1.0, &b, &at_one);
    per_chip(0.5, &b, &at_half);
    const double roofline = at_half - at_one, fixed = at_one - roofline;
    const double measured = static_cast<double>(b) / (run.output_tokens_per_s_per_chip *
                                                      static_cast<double>(run.tensor_parallel));
    return measured > fixed ? roofline / (measured - fixed) : std::nan("");
  }
};

RunModel run_model(const Catalog& catalog, const PublishedServing& run,
                   const ServingValidationSettings& settings) {
  const ModelShape shape = shape_from_config(model::preset(run.model), run.model);
  return RunModel{run, catalog.chip(run.chip),
                  ServedModel(shape, serving_precision(run.precision, run.kv_cache, shape)),
                  RequestMix({{run.prompt_tokens, run.output_tokens, 1}}), settings};
}

double error_pct(double predicted, double measured) {
  return 100.0 * (predicted - measured) / measured;
}

}  // namespace

std::vector<PublishedServing> parse_published_serving(const json& root, const std::string& what) {
  if (!root.is_object() || !root.contains("serving") || !root["serving"].is_array()) {
    fail("{}: expected an object with a 'serving' array", what);
  }
  std::vector<PublishedServing> runs;
  for (size_t i = 0; i < root["serving"].size(); ++i) {
    runs.push_back(parse_run(root["serving"][i], fmt::format("{}: serving[{}]", what, i)));
  }
  require(!runs.empty(), "{}: no serving runs", what);
  return runs;
}

ServingValidationReport validate_serving(const Catalog& catalog,
                                         const std::vector<PublishedServing>& runs,
                                         const ServingValidationSettings& settings) {
  ServingValidationReport report;
  std::vector<std::string> family_of;
  for (const PublishedServing& run : runs) {
    const RunModel m = run_model(catalog, run, settings);
    const ServingRate rate = roofline_serving_rate(catalog, m.chip, settings.assumed_efficiency);
    ServingValidationRow row;
    row.run = run;
    row.efficiency = rate.efficiency;
    row.evidence = rate.label();
    double tpot = 0;
    row.predicted = m.per_chip(rate.efficiency, &row.batch, &tpot);
    row.error_pct = error_pct(row.predicted, run.output_tokens_per_s_per_chip);
    row.implied_efficiency = m.implied_efficiency();
    report.rows.push_back(row);
    family_of.push_back(m.chip.family);
  }
  for (size_t i = 0; i < report.rows.size(); ++i) {
    double sum = 0;
    int count = 0;
    for (size_t j = 0; j < report.rows.size(); ++j) {
      const ServingValidationRow& other = report.rows[j];
      if (j == i || family_of[j] != family_of[i] || !other.run.calibrates ||
          std::isnan(other.implied_efficiency))
        continue;
      sum += other.implied_efficiency;
      ++count;
    }
    ServingValidationRow& row = report.rows[i];
    if (count == 0 || !catalog.serving_family(family_of[i])) continue;
    const RunModel m = run_model(catalog, row.run, settings);
    int64_t batch = 0;
    double tpot = 0;
    row.has_loo = true;
    row.loo_predicted = m.per_chip(std::min(1.0, sum / count), &batch, &tpot);
    row.loo_error_pct = error_pct(row.loo_predicted, row.run.output_tokens_per_s_per_chip);
  }
  double total = 0, loo_total = 0;
  int loo_count = 0;
  for (const ServingValidationRow& row : report.rows) {
    total += std::abs(row.error_pct);
    if (row.has_loo) {
      loo_total += std::abs(row.loo_error_pct);
      ++loo_count;
    }
  }
  report.mape = report.rows.empty() ? 0 : total / static_cast<double>(report.rows.size());
  report.loo_mape = loo_count ? loo_total / loo_count : 0;
  report.families =
      static_cast<int>(std::set<std::string>(family_of.begin(), family_of.end()).size());
  return report;
}

}  // namespace switchyard::plan
