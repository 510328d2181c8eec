// `switchyard plan validate`: the planner's roofline prediction of training throughput beside
// published measurements (data/catalog/published.json), and the mean absolute percentage error.
//
// The prediction for a run is the planner's roofline rate: chip dense bf16 peak x the family's MFU
// from the chip catalog, divided by the model's training FLOPs per token. Because the family MFUs
// are themselves derived from published runs, the report also gives a leave-one-out prediction: the
// MFU is the mean of the *other* runs on that family, so that no run predicts itself.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "plan/catalog.h"
#include "plan/workload.h"

namespace switchyard::plan {

struct PublishedRun {
  std::string name;
  std::string chip;  // catalog chip
  int64_t chips = 0;
  ModelShape shape;
  int64_t seq_len = 0;
  double tokens_per_s_per_chip = 0;  // measured
  std::string source, date, note;
};

// {"runs": [{"name", "chip", "chips", "model": ModelShape json, "seq_len",
//   "tokens_per_s_per_chip" | "sequences_per_s" (whole run), "source", "date", "note"?}]}
std::vector<PublishedRun> parse_published(const nlohmann::json& json, const std::string& what);

struct ValidationRow {
  PublishedRun run;
  double flops_per_token = 0;
  double measured_mfu = 0;
  double predicted = 0, error_pct = 0;          // with the catalog's family MFU
  double loo_predicted = 0, loo_error_pct = 0;  // leave-one-out family MFU (0 if no other run)
  bool has_loo = false;
};

struct ValidationReport {
  std::vector<ValidationRow> rows;
  double mape = 0;      // mean |error| in percent, catalog MFU
  double loo_mape = 0;  // over the rows that have a leave-one-out prediction
  int families = 0;     // chip families covered
};

// Throws Error for a run on an unknown chip or on a family without a stated MFU.
ValidationReport validate_published(const Catalog& catalog, const std::vector<PublishedRun>& runs);
std::string format_validation(const ValidationReport& report);

}  // namespace switchyard::plan
