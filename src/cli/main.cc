// switchyard: train, evaluate, sample and benchmark GPT-class models on the available chips.
#include <cstdio>
#include <exception>

#include "backend/cpu/thread_budget.h"
#include "cli/commands.h"
#include "cli/openmp_environment.h"
#include "core/error.h"

int main(int argc, char** argv) {
  switchyard::cli::ensure_openmp_wait_policy(argv);
  switchyard::backend::cpu::apply_thread_budget();
  CLI::App app{"Switchyard: train and serve GPT-class models on CPUs, GPUs and NeuronCores"};
  app.require_subcommand(1);
  switchyard::cli::add_devices_command(app);
  switchyard::cli::add_tokenize_command(app);
  switchyard::cli::add_prepare_command(app);
  switchyard::cli::add_train_command(app);
  switchyard::cli::add_eval_command(app);
  switchyard::cli::add_generate_command(app);
  switchyard::cli::add_bench_command(app);
  switchyard::cli::add_neuron_command(app);
  switchyard::cli::add_plan_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const switchyard::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
