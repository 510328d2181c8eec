#include "backend/cuda/cuda_device.h"

#include <cuda_runtime_api.h>
#include <fmt/format.h>

namespace switchyard::backend::cuda {

namespace {

double gib(size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

std::string version_string(int version) {
  return fmt::format("{}.{}", version / 1000, (version % 1000) / 10);
}

}  // namespace

CudaDeviceInfo probe_cuda_device(int index) {
  CudaDeviceInfo info;
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  cudaDriverGetVersion(&driver);  // 0 when no driver is installed
  if (driver == 0) {
    info.detail = "no NVIDIA driver found (libcuda is not installed or not loadable)";
    return info;
  }
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaErrorInsufficientDriver) {
    cudaGetLastError();
    info.detail = fmt::format(
        "the NVIDIA driver supports CUDA {} but this build needs CUDA {}: update the driver",
        version_string(driver), version_string(runtime));
    return info;
  }
  if (status != cudaSuccess || count == 0) {
    cudaGetLastError();
    info.detail = status == cudaSuccess || status == cudaErrorNoDevice
                      ? std::string("no NVIDIA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)")
                      : fmt::format("CUDA cannot see a GPU: {} ({})", cudaGetErrorString(status),
                                    cudaGetErrorName(status));
    return info;
  }
  if (index < 0 || index >= count) {
    info.detail = fmt::format("GPU {} does not exist ({} visible)", index, count);
    return info;
  }
  cudaDeviceProp props{};
  if (cudaGetDeviceProperties(&props, index) != cudaSuccess) {
    cudaGetLastError();
    info.detail = fmt::format("could not read the properties of GPU {}", index);
    return info;
  }
  info.compute_major = props.major;
  info.compute_minor = props.minor;
  info.total_bytes = props.totalGlobalMem;
  if (props.major < 8) {
    info.detail = fmt::format("{} has compute capability {}.{}; the CUDA backend needs 8.0 or newer "
                              "(bf16 arithmetic)",
                              props.name, props.major, props.minor);
    return info;
  }
  size_t free_bytes = 0, total_bytes = 0;
  int previous = 0;
  cudaGetDevice(&previous);
  std::string free_text;
  if (cudaSetDevice(index) == cudaSuccess && cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess) {
    free_text = fmt::format(" ({:.1f} free)", gib(free_bytes));
  }
  cudaGetLastError();
  cudaSetDevice(previous);
  info.available = true;
  info.detail = fmt::format("{}, compute capability {}.{}, {} SMs, {:.1f} GiB{}, driver CUDA {}",
                            props.name, props.major, props.minor, props.multiProcessorCount,
                            gib(props.totalGlobalMem), free_text, version_string(driver));
  return info;
}

}  // namespace switchyard::backend::cuda
