// Step-time evidence for the planner, best first:
//   measured   `switchyard bench train --json` on the chip itself;
//   simulated  the same JSON from a trn1-sim / trn2-sim run, with `simulated_ms_per_step`;
//   published  the chip's dense bf16 peak x its family's model-FLOPs utilisation, where that
//              utilisation comes from published runs on this very chip (the family's measured_on);
//   borrowed   the same, but the published runs were on another chip of the family (trn2 from trn1,
//              H200 from H100), whose name travels with the figure;
//   roofline   no evidence: peak x an MFU that no run in the catalog backs (--assumed-mfu, or a
//              family figure that names no chips).
//
// Measured and simulated runs are reduced to the model-FLOP rate they achieved on one chip
// (flops_per_step / step time); the planner applies that rate to the planned model, and says so
// when the run was of another model. A simulator run times cores, not chips: its rate is one
// core's (the whole step's FLOPs over its cores, in the time the core computed, its exposed
// collectives left out) times the chip's cores. A simulated cluster (`bench train --cores N`,
// whole chips) also gives the planner its collectives: rows with as many chips, data parallel
// only, take the cluster's simulated gradient collectives (scaled to the planned model's gradient
// bytes) instead of the ring formulas.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "plan/catalog.h"

namespace switchyard::plan {

enum class EvidenceKind { kMeasured, kSimulated, kPublished, kBorrowed, kRoofline };
// The name in JSON and CSV: "measured", "simulated", "published-same-chip",
// "borrowed-from-another-chip", "roofline".
const char* evidence_name(EvidenceKind kind);
// The short form for tables: "measured", "simulated", "published", "borrowed:trn1", "roofline".
std::string evidence_label(EvidenceKind kind, const std::vector<std::string>& source_chips);

struct StepEvidence {
  EvidenceKind kind = EvidenceKind::kMeasured;
  std::string chip;    // catalog chip name
  std::string model;   // the bench's "model" (preset name or checkpoint path)
  std::string origin;  // file it came from
  int64_t batch = 0, seq = 0;
  double ms_per_step = 0;  // measured, or simulated when kind == kSimulated
  double flops_per_step =
      0;  // model FLOPs of the step (ModelShape::training_flops_per_token * B * T)
  // Simulator runs: the chip's cores (0 where the file does not say: the rate is then the chip's)
  // and the cores that ran the step (1 without --cores).
  int64_t cores_per_chip = 0, cores = 1;
  // Simulated clusters (cores > 1): their gradient collectives a step, all and the part the
  // backward pass did not hide, and the gradient bytes they moved.
  double collective_ms = 0, exposed_collective_ms = 0, gradient_bytes = 0;
  // A cluster of whole chips: how many (0 otherwise).
  int64_t cluster_chips() const {
    return cores > 1 && cores_per_chip > 0 && cores % cores_per_chip == 0 ? cores / cores_per_chip
                                                                          : 0;
  }
  // Model FLOP/s of one chip (see the top of the file).
  double flops_per_second() const {
    const double compute_s = (ms_per_step - exposed_collective_ms) / 1000.0;
    if (cores_per_chip == 0) return flops_per_step / compute_s;
    return flops_per_step / static_cast<double>(cores) * static_cast<double>(cores_per_chip) /
           compute_s;
  }
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
  std::vector<std::string>
      source_chips;    // published and borrowed: the chips the MFU was measured on
  std::string detail;  // e.g. "published: 989.4 TFLOPS bf16 x MFU 0.39 of published h100 runs ..."
  std::string label() const { return evidence_label(kind, source_chips); }
};
// Best evidence for the chip: a measured run of the same model, then any measured run, then the
// same for simulated runs, then the family MFU (published when the chip is among the family's
// measured_on, borrowed when it is not), then `assumed_mfu` (roofline). Deterministic: among
// equals, the first given wins.
ComputeRate choose_rate(const Catalog& catalog, const ChipSpec& chip, const std::string& model_name,
                        const std::vector<StepEvidence>& evidence, double assumed_mfu);

}  // namespace switchyard::plan
