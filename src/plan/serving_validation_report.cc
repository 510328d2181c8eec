// format_serving_validation and serving_validation_to_json (declared in serving_validation.h).
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "plan/report_text.h"
#include "plan/serving_validation.h"

namespace switchyard::plan {

namespace {

std::string batch_text(const ServingValidationRow& r) {
  return r.run.concurrency > 0 ? std::to_string(r.batch) : fmt::format("max:{}", r.batch);
}

nlohmann::json number_or_null(double x) {
  return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr);
}

}  // namespace

std::string format_serving_validation(const ServingValidationReport& report) {
  std::vector<std::vector<std::string>> cells = {
      {"serving run", "chip", "chips", "TP", "batch", "in/out", "measured", "predicted", "error",
       "leave-1-out", "error", "implied eff.", "evidence", "source"}};
  Notes sources;
  for (const ServingValidationRow& r : report.rows) {
    cells.push_back(
        {r.run.name, r.run.chip, std::to_string(r.run.chips), std::to_string(r.run.tensor_parallel),
         batch_text(r), fmt::format("{}/{}", r.run.prompt_tokens, r.run.output_tokens),
         fmt::format("{:.1f}", r.run.output_tokens_per_s_per_chip),
         fmt::format("{:.1f}", r.predicted), fmt::format("{:+.1f}%", r.error_pct),
         r.has_loo ? fmt::format("{:.1f}", r.loo_predicted) : "-",
         r.has_loo ? fmt::format("{:+.1f}%", r.loo_error_pct) : "-",
         std::isnan(r.implied_efficiency) ? "none" : fmt::format("{:.3f}", r.implied_efficiency),
         fmt::format("{} {:.2f}", r.evidence, r.efficiency),
         sources.ref(fmt::format("{} ({}); {}", r.run.source, r.run.date, r.run.software))});
  }
  std::string out = aligned(cells);
  out +=
      "(output tokens/s per chip; batch: sequences per replica, max:N = the largest that fits, for "
      "maximum-throughput runs; implied eff.: the efficiency at which the model matches the run)\n";
  out += fmt::format(
      "serving mean absolute percentage error: {:.1f}% over {} runs on {} chip families "
      "(leave-one-out: {:.1f}%)\n",
      report.mape, report.rows.size(), report.families, report.loo_mape);
  out += fmt::format("runs off by more than {:.0f}%, explained:\n", report.threshold_pct);
  for (const ServingValidationRow& r : report.rows) {
    if (std::abs(r.error_pct) <= report.threshold_pct) continue;
    out += fmt::format("  {} ({:+.1f}%): {}\n", r.run.name, r.error_pct,
                       r.run.explanation.empty() ? "(no explanation recorded)" : r.run.explanation);
  }
  out += "serving sources:\n" + sources.format();
  out += "serving run notes:\n";
  for (const ServingValidationRow& r : report.rows) {
    out += fmt::format("  {}: {} weights, {} cache{}{}\n", r.run.name, r.run.precision,
                       r.run.kv_cache, r.run.calibrates ? "" : "; not in the family efficiency",
                       r.run.note.empty() ? "" : "; " + r.run.note);
  }
  return out;
}

nlohmann::json serving_validation_to_json(const ServingValidationReport& report) {
  nlohmann::json rows = nlohmann::json::array();
  for (const ServingValidationRow& r : report.rows) {
    const bool off = std::abs(r.error_pct) > report.threshold_pct;
    rows.push_back(
        {{"name", r.run.name},
         {"model", r.run.model},
         {"chip", r.run.chip},
         {"chips", r.run.chips},
         {"tensor_parallel", r.run.tensor_parallel},
         {"concurrency", r.run.concurrency > 0 ? nlohmann::json(r.run.concurrency) : nullptr},
         {"batch", r.batch},
         {"prompt_tokens", r.run.prompt_tokens},
         {"output_tokens", r.run.output_tokens},
         {"precision", r.run.precision},
         {"kv_cache", r.run.kv_cache},
         {"measured_output_tokens_per_s_per_chip", r.run.output_tokens_per_s_per_chip},
         {"predicted_output_tokens_per_s_per_chip", r.predicted},
         {"error_pct", r.error_pct},
         {"loo_predicted_output_tokens_per_s_per_chip",
          r.has_loo ? nlohmann::json(r.loo_predicted) : nullptr},
         {"loo_error_pct", r.has_loo ? nlohmann::json(r.loo_error_pct) : nullptr},
         {"implied_efficiency", number_or_null(r.implied_efficiency)},
         {"efficiency", r.efficiency},
         {"evidence", r.evidence},
         {"calibrates", r.run.calibrates},
         {"explanation", off ? nlohmann::json(r.run.explanation) : nullptr},
         {"software", r.run.software},
         {"source", r.run.source},
         {"date", r.run.date}});
  }
  return {{"runs", rows},
          {"mape_pct", report.mape},
          {"loo_mape_pct", report.loo_mape},
          {"families", report.families},
          {"explain_above_pct", report.threshold_pct}};
}

}  // namespace switchyard::plan
