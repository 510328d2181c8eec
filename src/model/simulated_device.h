// The simulator a model runs on, for code above the model (the serving engine) that reports
// simulated time without reaching into the backend. A simulator device keeps a simulated clock of
// all the work issued to it; real devices have none, and these return nullopt for them.
#pragma once

#include <optional>
#include <string>

#include "model/model.h"

namespace switchyard::model {

struct SimulatedDevice {
  std::string device;      // the backend: "trn2-sim"
  std::string target;      // the chip simulated: "trn2"
  std::string core;        // "NeuronCore-v3"
  int cores_per_chip = 1;  // the simulated core is one of these; a chip runs that many copies
};

std::optional<SimulatedDevice> simulated_device(const Model& model);

// Simulated seconds of all the work issued to the model's device so far.
std::optional<double> simulated_seconds(const Model& model);

}  // namespace switchyard::model
