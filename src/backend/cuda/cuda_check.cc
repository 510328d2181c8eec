#include "backend/cuda/cuda_check.h"

#include <string>

#include "core/error.h"

namespace switchyard::backend::cuda {

namespace {

// What a user can do about the errors that come from the machine rather than from a bug.
std::string advice(cudaError_t status) {
  switch (status) {
    case cudaErrorInsufficientDriver:
      return "; the NVIDIA driver is older than the CUDA toolkit this build uses: update the "
             "driver, or rebuild with a toolkit the driver supports (nvidia-smi shows its CUDA "
             "version)";
    case cudaErrorNoDevice:
      return "; no NVIDIA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)";
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
      return "; this binary holds no code this GPU can run: rebuild with its compute capability "
             "in CMAKE_CUDA_ARCHITECTURES";
    case cudaErrorMemoryAllocation:
      return "; the GPU is out of memory";
    default:
      return "";
  }
}

}  // namespace

void check_cuda(cudaError_t status, const char* what) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // clear the sticky-free error state so later calls report their own
  fail("CUDA {} failed: {} ({}){}", what, cudaGetErrorString(status), cudaGetErrorName(status),
       advice(status));
}

void check_launch(const char* kernel) {
  const cudaError_t status = cudaGetLastError();
  if (status == cudaSuccess) return;
  fail("CUDA kernel {} could not run: {} ({}){}", kernel, cudaGetErrorString(status),
       cudaGetErrorName(status), advice(status));
}

}  // namespace switchyard::backend::cuda
