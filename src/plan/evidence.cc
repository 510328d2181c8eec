#include "plan/evidence.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace switchyard::plan {

namespace {

double positive_number(const nlohmann::json& json, const char* key, const std::string& what) {
  if (!json.contains(key)) fail("{}: missing field '{}'", what, key);
  const nlohmann::json& v = json.at(key);
  if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() <= 0) {
    fail("{}: field '{}' must be a positive number, got {}", what, key, v.dump());
  }
  return v.get<double>();
}

}  // namespace

const char* evidence_name(EvidenceKind kind) {
  switch (kind) {
    case EvidenceKind::kMeasured:
      return "measured";
    case EvidenceKind::kSimulated:
      return "simulated";
    case EvidenceKind::kPublished:
      return "published-same-chip";
    case EvidenceKind::kBorrowed:
      return "borrowed-from-another-chip";
    case EvidenceKind::kRoofline:
      return "roofline";
  }
  return "?";
}

std::string evidence_label(EvidenceKind kind, const std::vector<std::string>& source_chips) {
  switch (kind) {
    case EvidenceKind::kPublished:
      return "published";
    case EvidenceKind::kBorrowed: {
      std::string label = "borrowed:";
      for (size_t i = 0; i < source_chips.size(); ++i) label += (i ? "+" : "") + source_chips[i];
      return label;
    }
    default:
      return evidence_name(kind);
  }
}

StepEvidence parse_evidence(const nlohmann::json& json, const std::string& chip,
                            const std::string& what) {
  if (!json.is_object()) fail("{}: expected a `bench train --json` object", what);
  if (json.contains("mode") && json["mode"] != "train") {
    fail("{}: mode {} is not a training benchmark (expected \"train\")", what, json["mode"].dump());
  }
  StepEvidence e;
  e.origin = what;
  e.chip = chip;
  if (e.chip.empty()) {
    if (!json.contains("chip") || !json["chip"].is_string()) {
      fail("{}: no chip named: pass CHIP=FILE or add a \"chip\" field", what);
    }
    e.chip = json["chip"].get<std::string>();
  }
  if (!json.contains("model") || !json["model"].is_string())
    fail("{}: missing string field 'model'", what);
  e.model = json["model"].get<std::string>();
  e.batch = static_cast<int64_t>(positive_number(json, "batch", what));
  e.seq = static_cast<int64_t>(positive_number(json, "seq", what));
  if (json.contains("simulated_ms_per_step")) {
    e.kind = EvidenceKind::kSimulated;
    e.ms_per_step = positive_number(json, "simulated_ms_per_step", what);
  } else {
    e.kind = EvidenceKind::kMeasured;
    e.ms_per_step = positive_number(json, "ms_per_step", what);
  }
  e.flops_per_step = positive_number(json, "flops_per_step", what);
  if (e.kind == EvidenceKind::kSimulated && json.contains("cores_per_chip")) {
    e.cores_per_chip = static_cast<int64_t>(positive_number(json, "cores_per_chip", what));
  }
  if (json.contains("cores")) e.cores = static_cast<int64_t>(positive_number(json, "cores", what));
  if (e.cores > 1) {
    require(e.kind == EvidenceKind::kSimulated, "{}: 'cores' {} in a run that is not simulated", what,
            e.cores);
    e.collective_ms = positive_number(json, "collective_ms", what);
    e.exposed_collective_ms = json.value("exposed_collective_ms", 0.0);
    require(e.exposed_collective_ms >= 0 && e.exposed_collective_ms < e.ms_per_step,
            "{}: 'exposed_collective_ms' must be at least 0 and less than the step", what);
    e.gradient_bytes = positive_number(json, "gradient_bytes", what);
  }
  return e;
}

StepEvidence load_evidence(const std::string& spec) {
  std::string chip, path = spec;
  if (size_t eq = spec.find('='); eq != std::string::npos) {
    chip = spec.substr(0, eq);
    path = spec.substr(eq + 1);
    require(!chip.empty() && !path.empty(), "--measured '{}': expected CHIP=FILE or FILE", spec);
  }
  std::ifstream in(path);
  if (!in) fail("cannot open measurement file {}", path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  nlohmann::json json;
  try {
    json = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error&) {
    // The bench prints a human line first and the JSON object last: take the last non-empty line.
    std::string last;
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
      if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
    }
    try {
      json = nlohmann::json::parse(last);
    } catch (const nlohmann::json::parse_error& e) {
      fail("{}: no JSON object found (expected the output of `switchyard bench train --json`): {}",
           path, e.what());
    }
  }
  return parse_evidence(json, chip, path);
}

ComputeRate choose_rate(const Catalog& catalog, const ChipSpec& chip, const std::string& model_name,
                        const std::vector<StepEvidence>& evidence, double assumed_mfu) {
  for (EvidenceKind kind : {EvidenceKind::kMeasured, EvidenceKind::kSimulated}) {
    const StepEvidence* best = nullptr;
    for (const StepEvidence& e : evidence) {
      if (e.kind != kind || e.chip != chip.name) continue;
      if (!best || (e.model == model_name && best->model != model_name)) best = &e;
    }
    if (best) {
      ComputeRate rate;
      rate.kind = kind;
      rate.flops_per_second = best->flops_per_second();
      rate.detail =
          fmt::format("{} {} of {} (B={}, T={}{}): {:.1f} ms/step, {:.3g} TFLOP/s per chip{}{}",
                      evidence_name(kind), best->origin, best->model, best->batch, best->seq,
                      best->cores > 1 ? fmt::format(", {} cores", best->cores) : "",
                      best->ms_per_step, rate.flops_per_second / 1e12,
                      best->cores_per_chip > 0
                          ? fmt::format(" (a core's rate x the chip's {} cores)", best->cores_per_chip)
                          : "",
                      best->model == model_name ? "" : "; other model, FLOP rate carried over");
      return rate;
    }
  }
  ComputeRate rate;
  const FamilyEfficiency* family = catalog.family(chip.family);
  const double peak = chip.bf16_tflops.value;
  if (!family) {
    rate.kind = EvidenceKind::kRoofline;
    rate.flops_per_second = peak * 1e12 * assumed_mfu;
    rate.detail = fmt::format(
        "roofline: {:g} TFLOPS bf16 x assumed MFU {:.2f} (--assumed-mfu; no published run for the "
        "{} family)",
        peak, assumed_mfu, chip.family);
    return rate;
  }
  rate.flops_per_second = peak * 1e12 * family->mfu.value;
  std::string sources;
  for (const std::string& name : family->measured_on)
    sources += (sources.empty() ? "" : ", ") + name;
  const bool same_chip = std::find(family->measured_on.begin(), family->measured_on.end(),
                                   chip.name) != family->measured_on.end();
  if (family->measured_on.empty()) {
    rate.kind = EvidenceKind::kRoofline;
    rate.detail = fmt::format(
        "roofline: {:g} TFLOPS bf16 x MFU {:.2f} stated for the {} family, which names no chip "
        "it was measured on",
        peak, family->mfu.value, chip.family);
  } else if (same_chip) {
    rate.kind = EvidenceKind::kPublished;
    rate.source_chips = {chip.name};
    rate.detail = fmt::format(
        "published: {:g} TFLOPS bf16 x MFU {:.2f}, the {} family's figure from published runs on "
        "{}",
        peak, family->mfu.value, chip.family, sources);
  } else {
    rate.kind = EvidenceKind::kBorrowed;
    rate.source_chips = family->measured_on;
    rate.detail = fmt::format(
        "borrowed from {}: {:g} TFLOPS bf16 x MFU {:.2f}, the {} family's figure from published "
        "runs on {}; no published {} run",
        sources, peak, family->mfu.value, chip.family, sources, chip.name);
  }
  return rate;
}

}  // namespace switchyard::plan
