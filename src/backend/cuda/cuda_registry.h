// The registry's view of the CUDA backends, in plain C++ (no CUDA headers), so that the registry
// compiles the same with and without the CUDA toolkit.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace switchyard::backend::cuda {

// "cuda" (bf16 mixed precision) and "cuda-fp32" (fp32 throughout, for exact checking).
const std::vector<std::string>& cuda_device_names();
// Both names, available or not, with the GPU's description or the reason it cannot run.
std::vector<BackendInfo> list_cuda_backends();
// Creates the named CUDA backend; throws Error saying why when no usable GPU is present.
std::unique_ptr<Backend> create_cuda_backend(const std::string& name);

}  // namespace switchyard::backend::cuda
