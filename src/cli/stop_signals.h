// SIGINT and SIGTERM while a long command runs: the first asks the work to stop at its next safe
// point (the handler only records which signal came, which is async-signal-safe, and says so on
// stderr); a second ends the process at once with _exit(128 + signal), the shell's convention.
#pragma once

namespace switchyard::cli {

class StopSignals {
 public:
  // Installs the handlers for SIGINT and SIGTERM. One StopSignals at a time. `message` is what the
  // first signal prints (a string that outlives this object).
  explicit StopSignals(const char* message = kTrainingMessage);
  static constexpr const char* kTrainingMessage =
      "\nstopping: finishing the current step and writing a checkpoint (a second Ctrl-C quits at once)\n";
  // Restores the handlers that were there before.
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  // The signal that asked to stop, or 0.
  static int received();
  static bool requested() { return received() != 0; }
  // "SIGINT" or "SIGTERM".
  static const char* name(int signal);
  // The exit status a process stopped by `signal` reports: 130 for SIGINT, 143 for SIGTERM.
  static int exit_code(int signal) { return 128 + signal; }
};

}  // namespace switchyard::cli
