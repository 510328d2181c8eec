// The plan as a person or a program reads it: an aligned text table, one JSON array, CSV, and an
// SVG scatter of cost against wall time with the Pareto front marked.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "plan/planner.h"

namespace switchyard::plan {

std::string format_table(const std::vector<PlanRow>& rows);
// One object per row with at least chip, chips, instances, hours, dollars, tokens_per_s, evidence.
nlohmann::json plan_to_json(const std::vector<PlanRow>& rows);
std::string plan_to_csv(const std::vector<PlanRow>& rows);
// Log-log scatter of dollars against hours for every fitting row; Pareto rows filled and joined.
// Throws Error when no row fits (there is nothing to draw).
std::string plan_to_svg(const std::vector<PlanRow>& rows, const std::string& title);

}  // namespace switchyard::plan
