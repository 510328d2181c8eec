#include "backend/cuda/cuda_registry.h"

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_device.h"
#include "core/error.h"

namespace switchyard::backend::cuda {

const std::vector<std::string>& cuda_device_names() {
  static const std::vector<std::string> names = {"cuda", "cuda-fp32"};
  return names;
}

std::vector<BackendInfo> list_cuda_backends() {
  const CudaDeviceInfo device = probe_cuda_device(0);
  return {{"cuda", device.available,
           device.available ? device.detail + ", bf16 compute, fp32 master weights" : device.detail},
          {"cuda-fp32", device.available,
           device.available ? device.detail + ", fp32 compute (parity mode)" : device.detail}};
}

std::unique_ptr<Backend> create_cuda_backend(const std::string& name) {
  require(name == "cuda" || name == "cuda-fp32", "'{}' is not a CUDA device", name);
  return std::make_unique<CudaBackend>(name == "cuda" ? CudaPrecision::kBf16 : CudaPrecision::kFp32);
}

}  // namespace switchyard::backend::cuda
