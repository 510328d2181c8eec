// `switchyard plan serve`: the cheapest instances per chip that serve a request load within TTFT
// and TPOT targets (plan/serving_planner.h).
#pragma once

#include <CLI/CLI.hpp>

namespace switchyard::cli {

// Adds `serve` under `plan`; returns it so that `plan` can tell it ran.
CLI::App* add_plan_serve_command(CLI::App& plan);

}  // namespace switchyard::cli
