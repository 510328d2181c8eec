#include "plan/serving_report.h"

#include <cmath>
#include <iterator>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "plan/report_text.h"
#include "plan/units.h"

namespace switchyard::plan {

namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

std::string ms(double seconds) {
  const double v = seconds * 1000.0;
  return v < 10    ? fmt::format("{:.2f} ms", v)
         : v < 100 ? fmt::format("{:.1f} ms", v)
                   : fmt::format("{:.0f} ms", v);
}

// "$0.42", or "$0.0031" for the small figures cheap plans give.
std::string per_million(double dollars) {
  if (!std::isfinite(dollars)) return "n/a";
  return dollars < 0.1 ? fmt::format("${:.2g}", dollars) : format_dollars(dollars);
}

std::string layout(const ServePoint& p) {
  return fmt::format("{} replica{} of TP={} at batch {}", p.replicas, p.replicas == 1 ? "" : "s",
                     p.tensor_parallel, p.batch);
}

std::string describe(const ServeRow& r) {
  return fmt::format(
      "{}, {} x {} ({} chips: {}), {} per million output tokens, TPOT {}, TTFT {}, evidence {}",
      r.chip, r.plan.instances, r.instance, r.plan.chips, layout(r.plan),
      per_million(r.plan.dollars_per_million), ms(r.plan.tpot_s), ms(r.plan.ttft_s),
      r.evidence_label());
}

nlohmann::json number_or_null(double x) {
  return std::isfinite(x) ? nlohmann::json(x) : nlohmann::json(nullptr);
}

nlohmann::json point_to_json(const ServePoint& p) {
  return {{"tensor_parallel", p.tensor_parallel},
          {"batch", p.batch},
          {"replicas", p.replicas},
          {"chips", p.chips},
          {"tpot_ms", p.tpot_s * 1000},
          {"ttft_ms", p.ttft_s * 1000},
          {"dollars_per_million_output_tokens", number_or_null(p.dollars_per_million)},
          {"meets_tpot", p.meets_tpot}};
}

// The plan's fields, null where the row has no plan.
void plan_fields(const ServeRow& r, nlohmann::json& o) {
  const ServePoint& p = r.plan;
  const bool has = r.meets_targets();
  auto put = [&](const char* key, nlohmann::json value) { o[key] = has ? value : nullptr; };
  put("instances", r.status == ServeStatus::kPlanned ? nlohmann::json(p.instances) : nullptr);
  put("chips", p.chips);
  put("tensor_parallel", p.tensor_parallel);
  put("replicas", p.replicas);
  put("batch", p.batch);
  put("tpot_ms", p.tpot_s * 1000);
  put("ttft_ms", p.ttft_s * 1000);
  put("step_ms", p.step_s * 1000);
  put("prefill_ms", p.prefill_s * 1000);
  put("slot_wait_ms", p.slot_wait_s * 1000);
  put("prefill_wait_ms", p.prefill_wait_s * 1000);
  put("utilisation", p.utilisation);
  put("output_tokens_per_s_per_chip", p.capacity_tokens_per_s_per_chip);
  put("load_output_tokens_per_s_per_chip", p.load_tokens_per_s_per_chip);
  put("memory_gib_per_chip", p.memory_per_chip / kGiB);
  put("price_per_hour", number_or_null(p.price_per_hour));
  put("dollars_per_million_output_tokens", number_or_null(p.dollars_per_million));
}

nlohmann::json row_to_json(const ServeRow& r) {
  nlohmann::json o = {
      {"chip", r.chip},
      {"instance", r.instance},
      {"status", serve_status_name(r.status)},
      {"meets_targets", r.meets_targets()},
      {"why_not", r.why_not.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.why_not)},
      {"evidence", evidence_name(r.evidence)},
      {"evidence_label", r.evidence_label()},
      {"evidence_source_chips", r.evidence_source_chips},
      {"evidence_detail", r.evidence_detail},
      {"weight_format", r.weight_format},
      {"efficiency", r.efficiency},
      {"memory_gib_capacity", r.memory_capacity / kGiB},
      {"memory_gib_usable", r.memory_usable / kGiB},
      {"cheapest", r.cheapest}};
  plan_fields(r, o);
  nlohmann::json curve = nlohmann::json::array();
  for (const ServePoint& p : r.curve) curve.push_back(point_to_json(p));
  o["curve"] = curve;
  return o;
}

std::string planned_table(const std::vector<ServeRow>& rows) {
  std::vector<std::vector<std::string>> cells = {{"chip", "instance", "n", "chips", "TP",
                                                  "replicas", "batch", "TPOT", "TTFT", "tok/s/chip",
                                                  "GiB/chip", "$/h", "$/Mtok", "evidence"}};
  for (const ServeRow& r : rows) {
    if (r.status != ServeStatus::kPlanned) continue;
    const ServePoint& p = r.plan;
    cells.push_back(
        {r.chip, r.instance, std::to_string(p.instances), std::to_string(p.chips),
         std::to_string(p.tensor_parallel), std::to_string(p.replicas), std::to_string(p.batch),
         ms(p.tpot_s), ms(p.ttft_s), human_count(p.capacity_tokens_per_s_per_chip),
         fmt::format("{:.1f}", p.memory_per_chip / kGiB), format_dollars(p.price_per_hour),
         per_million(p.dollars_per_million), r.evidence_label()});
  }
  if (cells.size() == 1) return "";
  return aligned(cells) +
         "(n: instances; TP: chips per replica; batch: sequences per replica; tok/s/chip: output "
         "tokens/s per chip at that batch, saturated; $/Mtok: at the requested load)\n";
}

std::string evidence_lines(const std::vector<ServeRow>& rows) {
  std::string out = "\nevidence (where each chip's step times come from):\n";
  for (const ServeRow& r : rows) {
    out += fmt::format("  {}: {} [{}]; {}\n", r.chip, r.evidence_detail, r.evidence_label(),
                       r.weight_format);
  }
  return out +
         "  kinds: measured / simulated = decode step times from a file (--step-times), which\n"
         "    also calibrates the chip's roofline at batches and degrees it does not time;\n"
         "    published = the roofline at the efficiency of published serving runs on this chip;\n"
         "    borrowed:X = the same from runs on chip X; roofline = an assumed efficiency\n";
}

std::string not_planned(const std::vector<ServeRow>& rows) {
  struct Section {
    ServeStatus status;
    const char* title;
  };
  std::string out;
  for (const Section& s :
       {Section{ServeStatus::kNoPrice, "no price (meets the targets, but no priced instance)"},
        Section{ServeStatus::kMissesLatency, "misses the latency targets"},
        Section{ServeStatus::kOverMaxChips, "over --max-chips"},
        Section{ServeStatus::kOutOfMemory, "does not fit in memory"}}) {
    bool first = true;
    for (const ServeRow& r : rows) {
      if (r.status != s.status) continue;
      if (first) out += fmt::format("\n{}:\n", s.title);
      first = false;
      out += fmt::format("  {}: {}\n", r.chip, r.why_not);
    }
  }
  return out;
}

}  // namespace

std::string serving_summary(const std::vector<ServeRow>& rows) {
  for (const ServeRow& r : rows) {
    if (r.cheapest) return fmt::format("cheapest: {}", describe(r));
  }
  for (const ServeRow& r : rows) {
    if (r.status == ServeStatus::kNoPrice) {
      return fmt::format(
          "no priced plan: {} meets the targets with {} chip{} ({}), but has no price", r.chip,
          r.plan.chips, r.plan.chips == 1 ? "" : "s", layout(r.plan));
    }
  }
  return "no plan meets the targets on any chip (see below)";
}

std::string format_serving_table(const std::vector<ServeRow>& rows, const std::string& heading) {
  std::string out = serving_summary(rows) + "\n";
  if (!heading.empty()) out += heading + "\n";
  out += planned_table(rows);
  out += evidence_lines(rows);
  return out + not_planned(rows);
}

nlohmann::json serving_to_json(const std::vector<ServeRow>& rows, const nlohmann::json& request) {
  nlohmann::json plans = nlohmann::json::array();
  nlohmann::json cheapest = nullptr;
  for (const ServeRow& r : rows) {
    plans.push_back(row_to_json(r));
    if (r.cheapest) cheapest = plans.back();
  }
  return {{"summary", serving_summary(rows)},
          {"request", request},
          {"cheapest", cheapest},
          {"plans", plans}};
}

std::string serving_to_csv(const std::vector<ServeRow>& rows) {
  static const char* kFields[] = {"chip",
                                  "instance",
                                  "status",
                                  "instances",
                                  "chips",
                                  "tensor_parallel",
                                  "replicas",
                                  "batch",
                                  "tpot_ms",
                                  "ttft_ms",
                                  "step_ms",
                                  "prefill_ms",
                                  "utilisation",
                                  "output_tokens_per_s_per_chip",
                                  "load_output_tokens_per_s_per_chip",
                                  "memory_gib_per_chip",
                                  "memory_gib_usable",
                                  "price_per_hour",
                                  "dollars_per_million_output_tokens",
                                  "cheapest",
                                  "evidence",
                                  "evidence_label",
                                  "evidence_detail",
                                  "weight_format",
                                  "why_not"};
  std::string out;
  for (const char* f : kFields) {
    if (!out.empty()) out += ',';
    out += f;
  }
  out += "\n";
  for (const ServeRow& r : rows) {
    const nlohmann::json o = row_to_json(r);
    for (size_t i = 0; i < std::size(kFields); ++i) {
      const nlohmann::json& v = o.at(kFields[i]);
      const std::string cell = v.is_null()           ? std::string()
                               : v.is_string()       ? v.get<std::string>()
                               : v.is_number_float() ? fmt::format("{:.6g}", v.get<double>())
                                                     : v.dump();
      if (i) out += ',';
      out += csv_field(cell);
    }
    out += "\n";
  }
  return out;
}

}  // namespace switchyard::plan
