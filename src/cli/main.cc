// switchyard: train, evaluate, sample and benchmark GPT-class models on the available chips.
//
// Exit status: 0 on success (and for --help), 1 when a command fails while running (a missing file,
// an unknown preset, a model that does not fit, ...), 2 for a mistake in the command line itself.
// Every failure prints one line starting with "error:" on stderr.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include "backend/cpu/thread_budget.h"
#include "cli/commands.h"
#include "cli/process_description.h"
#include "cli/usage_error.h"
#include "core/error.h"

namespace {

int report_runtime_error(const char* message) {
  std::fflush(stdout);  // what the command printed so far comes before the error
  std::fprintf(stderr, "error: %s\n", message);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  switchyard::backend::cpu::apply_thread_budget();
  CLI::App app{"Switchyard: train and serve GPT-class models on CPUs, GPUs and NeuronCores"};
  app.require_subcommand(1);
  // --verbose may stand anywhere before a "--", so it is taken out of the arguments here; the flag
  // on the root command documents it in --help.
  std::vector<std::string> args(argv, argv + argc);
  bool verbose = false;
  app.add_flag("-v,--verbose", verbose,
               "say how this process runs (threads, and why) before the command; anywhere on the line");
  for (auto it = args.begin() + 1; it != args.end() && *it != "--";) {
    if (*it == "-v" || *it == "--verbose") {
      verbose = true;
      it = args.erase(it);
    } else {
      ++it;
    }
  }
  if (verbose) std::fprintf(stderr, "%s\n", switchyard::cli::describe_process().c_str());
  args.erase(args.begin());                 // the program's name
  std::reverse(args.begin(), args.end());  // CLI11 takes the arguments last first
  switchyard::cli::add_devices_command(app);
  switchyard::cli::add_tokenize_command(app);
  switchyard::cli::add_prepare_command(app);
  switchyard::cli::add_train_command(app);
  switchyard::cli::add_eval_command(app);
  switchyard::cli::add_generate_command(app);
  switchyard::cli::add_chat_command(app);
  switchyard::cli::add_serve_command(app);
  switchyard::cli::add_bench_command(app);
  switchyard::cli::add_neuron_command(app);
  switchyard::cli::add_plan_command(app);
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help: the help text on stdout
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", switchyard::cli::describe_usage_error(app, e).c_str());
    return switchyard::cli::kUsageExitCode;
  } catch (const switchyard::Error& e) {
    return report_runtime_error(e.what());
  } catch (const std::exception& e) {
    return report_runtime_error(e.what());
  }
  return 0;
}
