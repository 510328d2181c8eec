// Each subcommand lives in its own file and registers itself on the root CLI11 app. Callbacks do
// the work; they throw switchyard::Error for user mistakes, which main() prints before exiting 1.
#pragma once

#include <CLI/CLI.hpp>

namespace switchyard::cli {

void add_devices_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_prepare_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_chat_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_bench_command(CLI::App& app);
void add_neuron_command(CLI::App& app);
void add_plan_command(CLI::App& app);

}  // namespace switchyard::cli
