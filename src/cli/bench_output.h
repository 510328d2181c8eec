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

// The CPU backend's OpenMP threads over the run (backend/cpu/thread_adapter.h): where the adapter
// ran fewer than the budget because other processes kept the CPUs busy, prints a line saying so,
// since the figures then measured a shared machine; adds "cpu_threads" to `json` when given.
void report_cpu_threads(nlohmann::json* json);

}  // namespace switchyard::cli
