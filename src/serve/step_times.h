// How long the engine's forward passes take, for /metrics: the wall seconds of each pass on every
// device and, on a simulator device, the simulated seconds beside them (the simulated chip's time,
// which the wall time of simulating it says nothing about). The engine thread times and records
// the passes; /metrics reads the histograms from any thread.
#pragma once

#include <chrono>
#include <memory>
#include <optional>

#include "model/model.h"
#include "model/simulated_device.h"
#include "serve/histogram.h"

namespace switchyard::serve {

// Times one forward pass: made just before it, read just after.
class PassTimer {
 public:
  explicit PassTimer(const model::Model& model);
  double wall_seconds() const;
  std::optional<double> simulated_seconds() const;  // nullopt on real devices

 private:
  const model::Model& model_;
  std::chrono::steady_clock::time_point wall_start_;
  std::optional<double> simulated_start_;
};

class StepTimes {
 public:
  // `simulated`: the simulator the passes run on; nullopt on a real device.
  explicit StepTimes(std::optional<model::SimulatedDevice> simulated);

  // One pass (engine thread); `simulated_seconds` is set on a simulator device only.
  void record(double wall_seconds, std::optional<double> simulated_seconds);

  const Histogram& wall_seconds() const { return wall_; }
  const std::optional<model::SimulatedDevice>& simulated_device() const { return device_; }
  const Histogram* simulated_seconds() const { return simulated_.get(); }  // null on real devices
  // Simulated seconds of all passes so far (engine thread; others read EngineStats).
  std::optional<double> simulated_total() const { return simulated_total_; }

 private:
  Histogram wall_;
  std::optional<model::SimulatedDevice> device_;
  std::unique_ptr<Histogram> simulated_;
  std::optional<double> simulated_total_;
};

}  // namespace switchyard::serve
