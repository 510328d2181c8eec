// The plan as a person or a program reads it: an aligned text table, one JSON object, CSV, and an
// SVG scatter of cost against wall time with the Pareto front marked. All four say the same things:
// which plan is cheapest and which fastest, where each row's throughput comes from (its evidence),
// when a row trains with another global batch than the one requested and why, why a figure is
// missing (energy without a published power figure), and which chips have no price as opposed to
// those whose memory the model does not fit.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "plan/planner.h"

namespace switchyard::plan {

// The cheapest planned row (ties: the faster) and the fastest (ties: the cheaper); null when no row
// is planned.
struct PlanSummary {
  const PlanRow* cheapest = nullptr;
  const PlanRow* fastest = nullptr;
};
PlanSummary summarize(const std::vector<PlanRow>& rows);
// One line naming both: "cheapest: trn2, 16 x trn2.48xlarge (256 chips), 2.6 min, $24.75,
// evidence borrowed:trn1; fastest: ...", or "no plan: ..." when nothing is planned.
std::string summary_line(const std::vector<PlanRow>& rows);

// The summary line first, then `heading` (if any), the table of planned rows with numbered notes
// for changed batches and missing figures, the evidence per chip with a legend of its kinds, and
// the rows that are not plans: no price, does not fit in memory, over --max-chips.
std::string format_table(const std::vector<PlanRow>& rows, const std::string& heading = "");
// {"summary": line, "cheapest": row | null, "fastest": row | null, "plans": [row...]}; each row has
// at least chip, instance, instances, chips, status, fits, hours, dollars, tokens_per_s, evidence.
nlohmann::json plan_to_json(const std::vector<PlanRow>& rows);
// One line per row, every field of the JSON rows that a table can hold.
std::string plan_to_csv(const std::vector<PlanRow>& rows);
// Log-log scatter of dollars against wall time for every planned row; Pareto rows filled and
// joined, the cheapest and fastest labelled, rows with a changed batch ringed. Throws Error when no
// row is planned (there is nothing to draw).
std::string plan_to_svg(const std::vector<PlanRow>& rows, const std::string& title);

}  // namespace switchyard::plan
