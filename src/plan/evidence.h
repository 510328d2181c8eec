// Step-time evidence for the planner, best first: measured (`switchyard bench train --json` on a
// real chip), simulated (the same JSON from a trn1-sim / trn2-sim run, with
// `simulated_ms_per_step`), and roofline (the chip's dense bf16 peak times its family's stated
// model-FLOPs utilisation).
//
// Measured and simulated runs are reduced to the model-FLOP rate they achieved on one chip
// (flops_per_step / step time); the planner applies that rate to the planned model, and says so
// when the run was of another model.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "plan/catalog.h"

namespace switchyard::plan {

enum class EvidenceKind { kMeasured, kSimulated, kRoofline };
const char* evidence_name(EvidenceKind kind);

struct StepEvidence {
  EvidenceKind kind = EvidenceKind::kMeasured;
  std::string chip;    // catalog chip name
  std::string model;   // the bench's "model" (preset name or checkpoint path)
  std::string origin;  // file it came from
  int64_t batch = 0, seq = 0;
  double ms_per_step = 0;  // measured, or simulated when kind == kSimulated
  double flops_per_step =
      0;  // model FLOPs of the step (GptConfig::training_flops_per_token * B * T)
  double flops_per_second() const { return flops_per_step / (ms_per_step / 1000.0); }
};

// From one `bench train --json` object. `chip` overrides the object's own "chip" field; one of them
// must name the chip. Required fields: model, batch, seq, ms_per_step (or simulated_ms_per_step),
// flops_per_step. Throws Error naming `what` and the field.
StepEvidence parse_evidence(const nlohmann::json& json, const std::string& chip,
                            const std::string& what);
// `spec` is CHIP=FILE or FILE (then the JSON's "chip" field names the chip). The file may hold one
// JSON object or several lines, the last of which is the bench's JSON line.
StepEvidence load_evidence(const std::string& spec);

// The per-chip model-FLOP rate the planner uses for `chip` and `model_name`, with its label.
struct ComputeRate {
  EvidenceKind kind = EvidenceKind::kRoofline;
  double flops_per_second = 0;
  std::string detail;  // e.g. "roofline: 989.4 TFLOPS bf16 x MFU 0.41 (hopper family)"
};
// Best evidence for the chip: a measured run of the same model, then any measured run, then the
// same for simulated runs, then the roofline (family MFU, or `assumed_mfu` labelled as assumed when
// the family has none). Deterministic: among equals, the first given wins.
ComputeRate choose_rate(const Catalog& catalog, const ChipSpec& chip, const std::string& model_name,
                        const std::vector<StepEvidence>& evidence, double assumed_mfu);

}  // namespace switchyard::plan
