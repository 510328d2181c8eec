// The serving plan as a person or a program reads it: a summary line and an aligned table, one
// JSON object, CSV, and an SVG of $ per million output tokens against TPOT with one series per
// chip (its batches 1, 2, 4, ...) and each chip's plan marked. All say the same things: which plan
// is cheapest, the batch, degree and replicas each assumes, where its step times come from, and
// why a chip has no plan (no price, latency targets it cannot meet, memory, --max-chips).
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "plan/serving_planner.h"

namespace switchyard::plan {

// "cheapest: h100, 2 x p5.48xlarge (16 chips: 16 replicas of TP=1 at batch 128), $0.42 per million
// output tokens, TPOT 38.1 ms, TTFT 412 ms, evidence published", or "no plan meets the targets:
// ..." when nothing is planned.
std::string serving_summary(const std::vector<ServeRow>& rows);
// The summary, `heading`, the planned rows, the evidence per chip and the rows that are not plans.
std::string format_serving_table(const std::vector<ServeRow>& rows, const std::string& heading);
// {"summary", "request": `request`, "cheapest": row | null, "plans": [row...]}.
nlohmann::json serving_to_json(const std::vector<ServeRow>& rows, const nlohmann::json& request);
// One line per chip with the JSON rows' fields (the curve left out).
std::string serving_to_csv(const std::vector<ServeRow>& rows);
// Log-log chart of $ per million output tokens against TPOT. Throws Error when no chip has a
// priced point (there is nothing to draw).
std::string serving_to_svg(const std::vector<ServeRow>& rows, double tpot_target_s,
                           const std::string& title);

}  // namespace switchyard::plan
