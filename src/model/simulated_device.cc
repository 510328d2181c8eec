#include "model/simulated_device.h"

namespace switchyard::model {

std::optional<SimulatedDevice> simulated_device(const Model& model) {
  const std::optional<backend::SimulationReport> report = backend::simulation_report(model.backend());
  if (!report) return std::nullopt;
  return SimulatedDevice{.device = model.backend().name(),
                         .target = report->target,
                         .core = report->core,
                         .cores_per_chip = report->cores_per_chip};
}

std::optional<double> simulated_seconds(const Model& model) {
  const std::optional<backend::SimulationReport> report = backend::simulation_report(model.backend());
  if (!report) return std::nullopt;
  return report->total_ns * 1e-9;
}

}  // namespace switchyard::model
