// Where a serving plan's step times come from, best first:
//   measured   decode step times of this engine on the chip (a step-time file, --step-times);
//   simulated  the same from a trn1-sim / trn2-sim run;
//   published  the roofline at the chip family's serving efficiency, where that efficiency comes
//              from published serving runs on this very chip (chips.json "serving_families");
//   borrowed   the same, from published runs on another chip of the family (named);
//   roofline   the roofline at an assumed efficiency (--assumed-efficiency), no run behind it.
//
// A step-time file replaces the roofline's decode steps for its chip, model and tensor-parallel
// degree up to the largest batch it times, and calibrates the chip's roofline elsewhere (scaled
// by the ratio of its last step to the roofline's there):
//   {"chip": "trn2", "model": "gpt-oss-20b", "kind": "simulated" | "measured",
//    "source": "...", "date"?: "...", "precision"?: "mxfp4", "tensor_parallel"?: 1,
//    "context": 1024,                       // tokens each sequence held in the timed steps
//    "steps": [{"batch": 1, "ms": 2.5}, {"batch": 8, "ms": 2.9}, ...]}
// Between timed batches the step time is interpolated linearly; a plan at another context adds the
// roofline's time for the difference in cache reads. Prefills stay on the roofline.
#pragma once

#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

#include "plan/catalog.h"
#include "plan/evidence.h"

namespace switchyard::plan {

struct StepTimeTable {
  EvidenceKind kind = EvidenceKind::kSimulated;  // kMeasured or kSimulated
  std::string chip, model, origin, source, date, precision;
  int64_t tensor_parallel = 1;
  double context = 0;
  std::vector<std::pair<int64_t, double>> steps;  // (batch, seconds), batches ascending

  int64_t max_batch() const { return steps.back().first; }
  // Seconds per decode step at `batch` (1 <= batch <= max_batch()), interpolated linearly; below
  // the smallest timed batch, that batch's time.
  double seconds(int64_t batch) const;
};

// Throws Error naming `what` and the field at fault.
StepTimeTable parse_step_times(const nlohmann::json& json, const std::string& what);
StepTimeTable load_step_times(const std::string& path);

// What a chip's serving steps are priced from.
struct ServingRate {
  EvidenceKind kind = EvidenceKind::kRoofline;
  double efficiency = 0.35;               // for the roofline parts (prefill always)
  std::vector<std::string> source_chips;  // published and borrowed
  std::string detail;                     // one sentence
  const StepTimeTable* table = nullptr;   // decode steps, when a file covers this chip and model
  std::string label() const { return evidence_label(kind, source_chips); }
};
// The step-time table for the chip, model and precision if any (measured before simulated), else
// the family's serving efficiency (published or borrowed), else `assumed_efficiency` (roofline).
ServingRate choose_serving_rate(const Catalog& catalog, const ChipSpec& chip,
                                const std::string& model, const std::string& precision,
                                const std::vector<StepTimeTable>& tables,
                                double assumed_efficiency);
// The same without step-time tables: the rate the roofline parts use.
ServingRate roofline_serving_rate(const Catalog& catalog, const ChipSpec& chip,
                                  double assumed_efficiency);

}  // namespace switchyard::plan
