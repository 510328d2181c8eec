// What the bench subcommands share in their output: the JSON line and the per-kernel table.
#pragma once

#include <nlohmann/json.hpp>

#include "backend/profiling_backend.h"

namespace switchyard::cli {

// The one JSON object a bench command prints as its last line.
void print_json_line(const nlohmann::json& json);

// Prints where the timed steps went, kernel by kernel (time per step, share of the median step,
// calls per step), and returns the same as {kernel: ms per step}.
nlohmann::json report_kernel_times(const backend::ProfilingBackend& profiler, int steps, double step_ms);

}  // namespace switchyard::cli
