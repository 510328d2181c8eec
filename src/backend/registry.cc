#include <optional>

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

// The backend named "cpu" is fp32 whatever the machine: it is the reference every backend's host
// fallback runs and the parity suite's exact bar. What `--device cpu` runs by default is decided
// per machine (device_for_dtype): bf16 where the CPU has bf16 units, as they are several times
// faster, fp32 where bf16 would only be emulated.
constexpr const char* kCpuFp32 =
    "fp32 (--dtype fp32): the exact reference the other devices are checked against";

// A device's precision forms: {device, its fp32 form, its bf16 form}.
struct PrecisionForms {
  std::string fp32, bf16;
};

std::optional<PrecisionForms> precision_forms(const std::string& device) {
  if (device == "cpu" || device == "cpu-bf16") return PrecisionForms{"cpu", "cpu-bf16"};
  if (device == "cuda" || device == "cuda-fp32") return PrecisionForms{"cuda-fp32", "cuda"};
  if (std::optional<neuron::SimDevice> sim = neuron::parse_sim_device(device)) {
    neuron::SimDevice fp32 = *sim, bf16 = *sim;
    fp32.precision = neuron::SimPrecision::kFp32;
    bf16.precision = neuron::SimPrecision::kBf16;
    return PrecisionForms{neuron::sim_device_name(fp32), neuron::sim_device_name(bf16)};
  }
  return std::nullopt;
}

}  // namespace

CpuDefaultDtype cpu_default_dtype() {
  const cpu::Bf16Units units = cpu::host_bf16_units();
  if (units == cpu::Bf16Units::kNone) {
    return {DType::kF32, "fp32 here: this CPU has no bf16 units, so bf16 would only be emulated "
                         "(slower than fp32); --dtype bf16 still runs it"};
  }
  return {DType::kBF16, fmt::format("bf16 here: this CPU computes bf16 products natively ({}); "
                                    "--dtype fp32 for the fp32 reference",
                                    units == cpu::Bf16Units::kAmx ? "AMX" : "AVX-512 BF16")};
}

std::string plain_device_name(const std::string& device) {
  const std::optional<PrecisionForms> forms = precision_forms(device);
  if (!forms) return device;
  return forms->fp32 == "cpu" ? "cpu" : forms->bf16;  // cuda and the simulators are bf16 by default
}

std::string device_for_dtype(const std::string& device, const std::string& dtype) {
  require(dtype == "auto" || dtype == "fp32" || dtype == "bf16",
          "unknown dtype '{}' (auto, fp32 or bf16)", dtype);
  const std::optional<PrecisionForms> forms = precision_forms(device);
  if (!forms) return device;  // unknown devices are create_backend's to name
  if (dtype == "auto") {
    if (device != "cpu") return device;
    return cpu_default_dtype().dtype == DType::kBF16 ? forms->bf16 : forms->fp32;
  }
  const std::string& wanted = dtype == "fp32" ? forms->fp32 : forms->bf16;
  const std::string& other = dtype == "fp32" ? forms->bf16 : forms->fp32;
  // "cpu", "cuda" and "trn2-sim" name the device and take either precision; "cpu-bf16",
  // "cuda-fp32" and "trn2-sim-fp32" name a precision too.
  const bool names_precision = device == other && device != plain_device_name(device);
  require(!names_precision, "device '{}' is {}, but --dtype asks for {}: use --device {} --dtype {}", device,
          dtype == "fp32" ? "bf16" : "fp32", dtype, wanted, dtype);
  return wanted;
}

std::vector<BackendInfo> list_backends() {
  std::vector<BackendInfo> backends;
  backends.push_back({"cpu", true,
                      fmt::format("{}; `--device cpu` runs {}; {}", kCpuFp32, cpu_default_dtype().reason,
                                  cpu::describe_host_cpu())});
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
