#include "plan/validation.h"

#include <cmath>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace switchyard::plan {

namespace {

std::string text_field(const nlohmann::json& json, const char* key, const std::string& where) {
  if (!json.contains(key) || !json[key].is_string() || json[key].get<std::string>().empty()) {
    fail("{}: missing non-empty string field '{}'", where, key);
  }
  return json[key].get<std::string>();
}

double number_field(const nlohmann::json& json, const char* key, const std::string& where) {
  const nlohmann::json& v = json.at(key);
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0) {
    fail("{}: field '{}' must be a positive number, got {}", where, key, v.dump());
  }
  return v.get<double>();
}

}  // namespace

std::vector<PublishedRun> parse_published(const nlohmann::json& json, const std::string& what) {
  if (!json.is_object() || !json.contains("runs") || !json["runs"].is_array()) {
    fail("{}: expected an object with a 'runs' array", what);
  }
  std::vector<PublishedRun> runs;
  for (size_t i = 0; i < json["runs"].size(); ++i) {
    const nlohmann::json& o = json["runs"][i];
    std::string where = fmt::format("{}: runs[{}]", what, i);
    if (!o.is_object()) fail("{}: expected an object", where);
    PublishedRun run;
    run.name = text_field(o, "name", where);
    where += " (" + run.name + ")";
    run.chip = text_field(o, "chip", where);
    if (!o.contains("chips") || !o["chips"].is_number_integer() || o["chips"].get<int64_t>() <= 0) {
      fail("{}: field 'chips' must be a positive integer", where);
    }
    run.chips = o["chips"].get<int64_t>();
    if (!o.contains("model")) fail("{}: missing field 'model'", where);
    run.shape = shape_from_json(o["model"], where + ".model");
    if (!o.contains("seq_len") || !o["seq_len"].is_number_integer() ||
        o["seq_len"].get<int64_t>() <= 0) {
      fail("{}: field 'seq_len' must be a positive integer", where);
    }
    run.seq_len = o["seq_len"].get<int64_t>();
    bool per_chip = o.contains("tokens_per_s_per_chip"), sequences = o.contains("sequences_per_s");
    if (per_chip == sequences) {
      fail("{}: give exactly one of 'tokens_per_s_per_chip' and 'sequences_per_s'", where);
    }
    run.tokens_per_s_per_chip = per_chip ? number_field(o, "tokens_per_s_per_chip", where)
                                         : number_field(o, "sequences_per_s", where) *
                                               static_cast<double>(run.seq_len) /
                                               static_cast<double>(run.chips);
    run.source = text_field(o, "source", where);
    run.date = text_field(o, "date", where);
    if (o.contains("note") && o["note"].is_string()) run.note = o["note"].get<std::string>();
    runs.push_back(std::move(run));
  }
  require(!runs.empty(), "{}: no runs", what);
  return runs;
}

ValidationReport validate_published(const Catalog& catalog, const std::vector<PublishedRun>& runs) {
  ValidationReport report;
  std::set<std::string> families;
  for (const PublishedRun& run : runs) {
    const ChipSpec& chip = catalog.chip(run.chip);
    const FamilyEfficiency* family = catalog.family(chip.family);
    require(family != nullptr,
            "published run '{}': chip {} (family {}) has no stated MFU in the catalog", run.name,
            chip.name, chip.family);
    families.insert(chip.family);
    ValidationRow row;
    row.run = run;
    row.flops_per_token = run.shape.training_flops_per_token(run.seq_len);
    const double peak = chip.bf16_tflops.value * 1e12;
    row.measured_mfu = run.tokens_per_s_per_chip * row.flops_per_token / peak;
    row.predicted = peak * family->mfu.value / row.flops_per_token;
    row.error_pct = 100.0 * (row.predicted - run.tokens_per_s_per_chip) / run.tokens_per_s_per_chip;
    report.rows.push_back(row);
  }
  // Leave-one-out: the family MFU from the other runs of the family.
  for (size_t i = 0; i < report.rows.size(); ++i) {
    ValidationRow& row = report.rows[i];
    const std::string& family = catalog.chip(row.run.chip).family;
    double sum = 0;
    int count = 0;
    for (size_t j = 0; j < report.rows.size(); ++j) {
      if (j == i || catalog.chip(report.rows[j].run.chip).family != family) continue;
      sum += report.rows[j].measured_mfu;
      ++count;
    }
    if (count == 0) continue;
    const double peak = catalog.chip(row.run.chip).bf16_tflops.value * 1e12;
    row.has_loo = true;
    row.loo_predicted = peak * (sum / count) / row.flops_per_token;
    row.loo_error_pct =
        100.0 * (row.loo_predicted - row.run.tokens_per_s_per_chip) / row.run.tokens_per_s_per_chip;
  }
  double total = 0, loo_total = 0;
  int loo_count = 0;
  for (const ValidationRow& row : report.rows) {
    total += std::abs(row.error_pct);
    if (row.has_loo) {
      loo_total += std::abs(row.loo_error_pct);
      ++loo_count;
    }
  }
  report.mape = total / static_cast<double>(report.rows.size());
  report.loo_mape = loo_count ? loo_total / loo_count : 0;
  report.families = static_cast<int>(families.size());
  return report;
}

std::string format_validation(const ValidationReport& report) {
  std::string out =
      fmt::format("{:<34} {:<5} {:>5} {:>12} {:>12} {:>8} {:>12} {:>8} {:>6}\n", "run", "chip",
                  "chips", "measured", "predicted", "error", "leave-1-out", "error", "MFU");
  for (const ValidationRow& r : report.rows) {
    out += fmt::format(
        "{:<34} {:<5} {:>5} {:>12.1f} {:>12.1f} {:>+7.1f}% {:>12} {:>8} {:>5.1f}%\n", r.run.name,
        r.run.chip, r.run.chips, r.run.tokens_per_s_per_chip, r.predicted, r.error_pct,
        r.has_loo ? fmt::format("{:.1f}", r.loo_predicted) : "-",
        r.has_loo ? fmt::format("{:+.1f}%", r.loo_error_pct) : "-", 100 * r.measured_mfu);
  }
  out += "(tokens/s per chip; MFU = measured model FLOPs / dense bf16 peak)\n";
  out += fmt::format(
      "mean absolute percentage error: {:.1f}% over {} runs on {} chip families "
      "(leave-one-out: {:.1f}%)\n",
      report.mape, report.rows.size(), report.families, report.loo_mape);
  out += "sources:\n";
  for (const ValidationRow& r : report.rows) {
    out += fmt::format("  {}: {} ({}){}\n", r.run.name, r.run.source, r.run.date,
                       r.run.note.empty() ? "" : "; " + r.run.note);
  }
  return out;
}

}  // namespace switchyard::plan
