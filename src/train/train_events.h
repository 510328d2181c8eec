// What a training run reports as it goes. The library says what happened; whoever runs it (the
// CLI's progress line, a test) decides what to show.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>

#include "backend/simulated_span.h"

namespace switchyard::train {

// One optimizer step done.
struct StepReport {
  int step = 0;               // 1-based, of `total`
  int first_step = 0;         // where this run (resumed or not) started
  int total = 0;
  float loss = 0, learning_rate = 0, grad_norm = 0;
  double ms = 0;              // wall time of the step
  double tokens = 0;          // tokens of the step
  std::optional<backend::SimulatedSpan> simulated;  // simulator devices
};

struct EvalReport {
  int step = 0;
  double loss = 0, perplexity = 0;
  size_t tokens = 0;
};

struct TrainEvents {
  std::function<void(const StepReport&)> step;
  std::function<void(const EvalReport&)> evaluated;
  // Things worth a line of their own: a log that lost steps, a time limit reached, the summary.
  std::function<void(const std::string&)> note;

  void on_step(const StepReport& r) const { if (step) step(r); }
  void on_eval(const EvalReport& r) const { if (evaluated) evaluated(r); }
  void on_note(const std::string& text) const { if (note) note(text); }
};

}  // namespace switchyard::train
