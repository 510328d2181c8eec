#include "plan/serving_evidence.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "core/error.h"

namespace switchyard::plan {

namespace {

using nlohmann::json;

std::string text(const json& o, const char* key, const std::string& what, bool required) {
  if (!o.contains(key)) {
    if (required) fail("{}: missing string field '{}'", what, key);
    return "";
  }
  if (!o[key].is_string() || o[key].get<std::string>().empty()) {
    fail("{}: field '{}' must be a non-empty string, got {}", what, key, o[key].dump());
  }
  return o[key].get<std::string>();
}

double positive(const json& o, const char* key, const std::string& what) {
  if (!o.contains(key)) fail("{}: missing field '{}'", what, key);
  const json& v = o[key];
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0) {
    fail("{}: field '{}' must be a positive number, got {}", what, key, v.dump());
  }
  return v.get<double>();
}

int64_t whole(const json& o, const char* key, const std::string& what) {
  if (!o.contains(key) || !o[key].is_number_integer() || o[key].get<int64_t>() <= 0) {
    fail("{}: field '{}' must be a positive integer", what, key);
  }
  return o[key].get<int64_t>();
}

}  // namespace

double StepTimeTable::seconds(int64_t batch) const {
  require(batch >= 1 && batch <= max_batch(), "{}: batch {} is outside the timed batches 1..{}",
          origin, batch, max_batch());
  if (batch <= steps.front().first) return steps.front().second;
  for (size_t i = 1; i < steps.size(); ++i) {
    if (batch > steps[i].first) continue;
    const auto [b0, s0] = steps[i - 1];
    const auto [b1, s1] = steps[i];
    return s0 + (s1 - s0) * static_cast<double>(batch - b0) / static_cast<double>(b1 - b0);
  }
  return steps.back().second;
}

StepTimeTable parse_step_times(const json& o, const std::string& what) {
  if (!o.is_object()) fail("{}: expected a step-time object", what);
  StepTimeTable t;
  t.origin = what;
  t.chip = text(o, "chip", what, true);
  t.model = text(o, "model", what, true);
  const std::string kind = text(o, "kind", what, true);
  if (kind == "simulated") {
    t.kind = EvidenceKind::kSimulated;
  } else if (kind == "measured") {
    t.kind = EvidenceKind::kMeasured;
  } else {
    fail("{}: 'kind' must be \"measured\" or \"simulated\", got \"{}\"", what, kind);
  }
  t.source = text(o, "source", what, true);
  t.date = text(o, "date", what, false);
  t.precision = text(o, "precision", what, false);
  if (o.contains("tensor_parallel")) t.tensor_parallel = whole(o, "tensor_parallel", what);
  t.context = positive(o, "context", what);
  if (!o.contains("steps") || !o["steps"].is_array() || o["steps"].empty()) {
    fail("{}: 'steps' must be a non-empty array of {{\"batch\", \"ms\"}}", what);
  }
  for (size_t i = 0; i < o["steps"].size(); ++i) {
    const std::string where = fmt::format("{}: steps[{}]", what, i);
    const json& s = o["steps"][i];
    if (!s.is_object()) fail("{}: expected {{\"batch\", \"ms\"}}", where);
    const int64_t batch = whole(s, "batch", where);
    require(t.steps.empty() || batch > t.steps.back().first,
            "{}: batches must ascend, got {} after {}", where, batch,
            t.steps.empty() ? 0 : t.steps.back().first);
    t.steps.emplace_back(batch, positive(s, "ms", where) / 1000.0);
  }
  return t;
}

StepTimeTable load_step_times(const std::string& path) {
  return parse_step_times(read_json_file(path), path);
}

ServingRate roofline_serving_rate(const Catalog& catalog, const ChipSpec& chip,
                                  double assumed_efficiency) {
  require(assumed_efficiency > 0 && assumed_efficiency <= 1,
          "--assumed-efficiency must be in (0, 1], got {}", assumed_efficiency);
  ServingRate rate;
  const ServingFamily* family = catalog.serving_family(chip.family);
  if (!family) {
    rate.efficiency = assumed_efficiency;
    rate.detail = fmt::format(
        "roofline at an assumed efficiency of {:.2f} (--assumed-efficiency; no published serving "
        "run for the {} family)",
        assumed_efficiency, chip.family);
    return rate;
  }
  rate.efficiency = family->efficiency.value;
  rate.source_chips = family->measured_on;
  std::string sources;
  for (const std::string& name : family->measured_on)
    sources += (sources.empty() ? "" : ", ") + name;
  const bool same = std::find(family->measured_on.begin(), family->measured_on.end(), chip.name) !=
                    family->measured_on.end();
  rate.kind = same ? EvidenceKind::kPublished : EvidenceKind::kBorrowed;
  if (same) rate.source_chips = {chip.name};
  rate.detail =
      same ? fmt::format(
                 "roofline at efficiency {:.2f}, the {} family's figure from published serving "
                 "runs on {}",
                 family->efficiency.value, chip.family, sources)
           : fmt::format(
                 "roofline at efficiency {:.2f}, borrowed from published serving runs on {} (the "
                 "{} family); none on {}",
                 family->efficiency.value, sources, chip.family, chip.name);
  return rate;
}

ServingRate choose_serving_rate(const Catalog& catalog, const ChipSpec& chip,
                                const std::string& model, const std::string& precision,
                                const std::vector<StepTimeTable>& tables,
                                double assumed_efficiency) {
  ServingRate rate = roofline_serving_rate(catalog, chip, assumed_efficiency);
  for (EvidenceKind kind : {EvidenceKind::kMeasured, EvidenceKind::kSimulated}) {
    for (const StepTimeTable& t : tables) {
      if (t.kind != kind || t.chip != chip.name || t.model != model) continue;
      if (!t.precision.empty() && t.precision != precision) continue;
      const std::string roof = rate.detail;
      rate.kind = kind;
      rate.source_chips.clear();
      rate.table = &t;
      rate.detail = fmt::format(
          "{} decode steps from {} ({}: batch {}..{}, TP={}, context {:g}; other batches and "
          "degrees: the roofline scaled to the file's last step); prefill: {}",
          evidence_name(kind), t.origin, t.source, t.steps.front().first, t.max_batch(),
          t.tensor_parallel, t.context, roof);
      return rate;
    }
  }
  return rate;
}

}  // namespace switchyard::plan
