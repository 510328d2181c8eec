// switchyard bench generate: greedy decoding of --batch sequences with the KV cache, timed step by
// step (bench_generate_command.cc).
#pragma once

#include <CLI/CLI.hpp>

namespace switchyard::cli {

// Adds "generate" under the `bench` command.
void add_bench_generate_command(CLI::App& bench);

}  // namespace switchyard::cli
