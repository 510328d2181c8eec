#include "cli/progress_line.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

namespace switchyard::cli {

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "?";
  long s = static_cast<long>(seconds + 0.5);
  return fmt::format("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60);
}

ProgressLine::ProgressLine(int first_step, int total, int every, double elapsed_s)
    : start_(std::chrono::steady_clock::now() -
             std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                 std::chrono::duration<double>(elapsed_s))),
      first_step_(first_step),
      total_(total),
      every_(every < 1 ? 1 : every),
      terminal_(isatty(STDERR_FILENO) != 0) {}

double ProgressLine::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void ProgressLine::update(int step, double tokens_done_since_start, const std::string& text) {
  int done = step + 1 - first_step_;
  double elapsed = elapsed_seconds();
  double eta = done > 0 ? elapsed / done * (total_ - step - 1) : -1;
  double rate = elapsed > 0 ? tokens_done_since_start / elapsed : 0;
  std::string line = fmt::format("step {:>{}}/{} | {} | {:.0f} tok/s | elapsed {} | ETA {}", step + 1,
                                 std::to_string(total_).size(), total_, text, rate,
                                 format_duration(elapsed), format_duration(eta));
  if (terminal_) {
    std::fprintf(stderr, "\r\033[K%s", line.c_str());
    dirty_ = true;
  } else if ((step + 1) % every_ == 0 || step + 1 == total_ || done == 1) {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

void ProgressLine::finish() {
  if (terminal_ && dirty_) std::fprintf(stderr, "\n");
  dirty_ = false;
}

}  // namespace switchyard::cli
