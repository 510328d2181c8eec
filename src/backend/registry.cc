#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_bf16_backend.h"
#include "backend/neuron/neuron_sim_backend.h"
#include "core/error.h"

#if SWITCHYARD_WITH_CUDA
#include "backend/cuda/cuda_registry.h"
#endif

namespace switchyard::backend {

namespace {

// What `switchyard devices` says about the CUDA devices in a build without the CUDA toolkit.
constexpr const char* kCudaNotBuilt =
    "not in this build: it was compiled without the CUDA toolkit (install nvcc, e.g. in "
    "/usr/local/cuda, and rebuild)";

// Why "cpu" stays fp32 where the CPU has bf16 units: it is the reference every backend's host
// fallback runs and the parity suite's exact bar, and a run's numbers should not change with the
// machine it lands on; bf16 is asked for by name, as "cuda-fp32" is on GPUs the other way round.
constexpr const char* kCpuDefault =
    "fp32, the default (the exact reference the other devices are checked against; bf16 mixed "
    "precision is cpu-bf16)";

}  // namespace

std::vector<BackendInfo> list_backends() {
  std::vector<BackendInfo> backends;
  backends.push_back({"cpu", true, fmt::format("{}; {}", kCpuDefault, cpu::describe_host_cpu())});
  backends.push_back({"cpu-bf16", true, cpu::CpuBf16Backend().description()});
#if SWITCHYARD_WITH_CUDA
  for (BackendInfo& info : cuda::list_cuda_backends()) backends.push_back(std::move(info));
#else
  backends.push_back({"cuda", false, kCudaNotBuilt});
  backends.push_back({"cuda-fp32", false, kCudaNotBuilt});
#endif
  for (const std::string& name : neuron::sim_device_names()) {
    backends.push_back({name, true, neuron::describe_sim_device(name)});
  }
  return backends;
}

std::unique_ptr<Backend> create_backend(const std::string& name) {
  if (name == "cpu") return std::make_unique<cpu::CpuBackend>();
  if (name == "cpu-bf16") return std::make_unique<cpu::CpuBf16Backend>();
  if (name == "cuda" || name == "cuda-fp32") {
#if SWITCHYARD_WITH_CUDA
    return cuda::create_cuda_backend(name);
#else
    fail("device '{}' is {}", name, kCudaNotBuilt);
#endif
  }
  if (const std::optional<neuron::SimDevice> sim = neuron::parse_sim_device(name)) {
    return std::make_unique<neuron::NeuronSimBackend>(sim->target, sim->precision, sim->mode);
  }
  std::string known;
  for (const BackendInfo& info : list_backends()) known += (known.empty() ? "" : ", ") + info.name;
  fail("unknown device '{}' (this build knows: {})", name, known);
}

}  // namespace switchyard::backend
