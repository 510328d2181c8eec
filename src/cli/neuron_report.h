// The report every `switchyard neuron bench` kernel prints: simulated time, TFLOPS against the
// peak, HBM traffic against the core's share of bandwidth, memory high-water marks and engine
// utilisation, as text and as the common fields of the --json line.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "neuron/config.h"
#include "neuron/neuron_core.h"

namespace switchyard::cli {

// `peak_dtype`: the matmul input dtype whose published peak "percent of peak" refers to.
void print_neuron_run(const neuron::CoreConfig& config, const neuron::RunStats& stats,
                      neuron::DType peak_dtype, double wall_s, const std::string& trace);

// simulated_us, tflops, peak_tflops, percent_of_peak, busy_cycles and utilization per engine, HBM
// bytes and GB/s (and percent of the core's share), SBUF/PSUM high water, instructions, wall time.
nlohmann::json neuron_run_json(const neuron::CoreConfig& config, const neuron::RunStats& stats,
                               neuron::DType peak_dtype, double wall_s);

}  // namespace switchyard::cli
