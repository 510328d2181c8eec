#include "serve/step_times.h"

#include <vector>

namespace switchyard::serve {
namespace {

// A pass on a CPU takes from a millisecond (a small model's decode step) to minutes (a large
// prompt simulated instruction by instruction).
std::vector<double> wall_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0};
}
// A simulated chip's pass: from microseconds (a tiny model's decode step) to a second.
std::vector<double> simulated_buckets() {
  return {1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0};
}

}  // namespace

PassTimer::PassTimer(const model::Model& model)
    : model_(model), wall_start_(std::chrono::steady_clock::now()), simulated_start_(model::simulated_seconds(model)) {}

double PassTimer::wall_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start_).count();
}

std::optional<double> PassTimer::simulated_seconds() const {
  if (!simulated_start_) return std::nullopt;
  return *model::simulated_seconds(model_) - *simulated_start_;
}

StepTimes::StepTimes(std::optional<model::SimulatedDevice> simulated)
    : wall_(wall_buckets()), device_(std::move(simulated)) {
  if (!device_) return;
  simulated_ = std::make_unique<Histogram>(simulated_buckets());
  simulated_total_ = 0.0;
}

void StepTimes::record(double wall_seconds, std::optional<double> simulated_seconds) {
  wall_.observe(wall_seconds);
  if (!simulated_ || !simulated_seconds) return;
  simulated_->observe(*simulated_seconds);
  *simulated_total_ += *simulated_seconds;
}

}  // namespace switchyard::serve
