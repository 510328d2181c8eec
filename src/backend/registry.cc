#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/neuron/neuron_sim_backend.h"
#include "core/error.h"

namespace switchyard::backend {

std::vector<BackendInfo> list_backends() {
  std::vector<BackendInfo> backends;
  backends.push_back({"cpu", true, cpu::describe_host_cpu()});
  for (const std::string& name : neuron::sim_device_names()) {
    backends.push_back({name, true, neuron::describe_sim_device(name)});
  }
  return backends;
}

std::unique_ptr<Backend> create_backend(const std::string& name) {
  if (name == "cpu") return std::make_unique<cpu::CpuBackend>();
  std::string target;
  neuron::SimPrecision precision;
  if (neuron::parse_sim_device(name, target, precision)) {
    return std::make_unique<neuron::NeuronSimBackend>(target, precision);
  }
  std::string known;
  for (const BackendInfo& info : list_backends()) known += (known.empty() ? "" : ", ") + info.name;
  fail("unknown device '{}' (this build knows: {})", name, known);
}

}  // namespace switchyard::backend
