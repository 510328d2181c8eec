// Finding the GPU the CUDA backend runs on, and describing it, without throwing: `switchyard
// devices` lists the CUDA backends on machines with no GPU (or no driver) and says why they cannot
// run there.
#pragma once

#include <cstddef>
#include <string>

namespace switchyard::backend::cuda {

struct CudaDeviceInfo {
  bool available = false;
  // "NVIDIA H100 80GB HBM3, compute capability 9.0, 132 SMs, 79.1 GiB (78.6 free), driver CUDA
  // 13.0" when available; otherwise the reason, e.g. "no NVIDIA GPU is visible ...".
  std::string detail;
  int compute_major = 0, compute_minor = 0;
  size_t total_bytes = 0;
};

// Probes device `index` (0: the first visible GPU). Never throws.
CudaDeviceInfo probe_cuda_device(int index = 0);

}  // namespace switchyard::backend::cuda
