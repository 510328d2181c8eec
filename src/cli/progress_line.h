// The live progress line of long work: step, loss, tokens/s and ETA, redrawn in place on a
// terminal and printed as plain lines (every `every` steps) when stderr is a file or pipe.
#pragma once

#include <chrono>
#include <string>

namespace switchyard::cli {

// "1:02:03" style duration.
std::string format_duration(double seconds);

class ProgressLine {
 public:
  // `total` steps of work that started `elapsed_s` seconds ago (a line made once the first step
  // has run counts that step's time); steps counted from `first_step` (for resumed runs).
  ProgressLine(int first_step, int total, int every, double elapsed_s = 0);
  // Reports that step `step` (0-based) finished with `text` describing it; computes rate and ETA.
  void update(int step, double tokens_done_since_start, const std::string& text);
  // Ends the line on a terminal.
  void finish();
  double elapsed_seconds() const;

 private:
  std::chrono::steady_clock::time_point start_;
  int first_step_, total_, every_;
  bool terminal_;
  bool dirty_ = false;
};

}  // namespace switchyard::cli
