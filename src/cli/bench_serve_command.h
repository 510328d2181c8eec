// switchyard bench serve: a load generator for OpenAI-compatible servers (Switchyard's or any
// other), measuring time to first token, time per output token, inter-token latency, end-to-end
// latency and throughput as vLLM's serving benchmark does; against a server on a simulator device,
// whose /metrics counts simulated time, also the simulated output tokens/s per core and per chip.
#pragma once

#include <CLI/CLI.hpp>

namespace switchyard::cli {

// Adds "serve" under the `bench` command.
void add_bench_serve_command(CLI::App& bench);

}  // namespace switchyard::cli
