#include "backend/cuda/cuda_backend.h"

#include <algorithm>
#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/cuda_device.h"
#include "core/error.h"

namespace switchyard::backend::cuda {

namespace {

double gib(size_t bytes) { return static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0); }

}  // namespace

CudaBackend::CudaBackend(CudaPrecision precision) : precision_(precision) {
  const CudaDeviceInfo info = probe_cuda_device(0);
  require(info.available, "device '{}' cannot run here: {}", name(), info.detail);
  check_cuda(cudaSetDevice(0), "device selection");
  check_cuda(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "stream creation");
  matmul_ = std::make_unique<Matmul>(stream_);
  staging_ = std::make_unique<PinnedStaging>(stream_);
  live_bytes_ = peak_bytes_ = Matmul::kWorkspaceBytes;
  description_ = info.detail + (bf16_mode() ? ", bf16 compute, fp32 master weights"
                                            : ", fp32 compute (parity mode, no TF32)");
}

CudaBackend::~CudaBackend() {
  cudaStreamSynchronize(stream_);
  staging_.reset();
  matmul_.reset();
  for (auto& [ptr, bytes] : allocations_) cudaFree(const_cast<char*>(ptr));
  if (workspace_) cudaFree(workspace_);
  if (stream_) cudaStreamDestroy(stream_);
}

std::string CudaBackend::name() const { return bf16_mode() ? "cuda" : "cuda-fp32"; }

// ---- memory ----

void* CudaBackend::device_alloc(size_t bytes, const char* what) {
  void* ptr = nullptr;
  const cudaError_t status = cudaMalloc(&ptr, std::max<size_t>(bytes, 1));
  if (status == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    fail("out of GPU memory: {} needs {} bytes ({:.2f} GiB), but only {:.2f} GiB of the GPU's "
         "{:.2f} GiB are free ({:.2f} GiB held by this process; use a smaller batch or sequence)",
         what, bytes, gib(bytes), gib(free_bytes), gib(total_bytes), gib(live_bytes_));
  }
  check_cuda(status, what);
  live_bytes_ += bytes;
  peak_bytes_ = std::max(peak_bytes_, live_bytes_);
  return ptr;
}

void CudaBackend::device_free(void* ptr, size_t bytes) {
  if (!ptr) return;
  check_cuda(cudaFree(ptr), "free");  // waits for the device: no queued kernel still uses it
  live_bytes_ -= bytes;
}

void* CudaBackend::allocate(size_t bytes) {
  void* ptr = device_alloc(bytes, "an allocation of device memory");
  allocations_[static_cast<const char*>(ptr)] = bytes;
  return ptr;
}

void CudaBackend::release(void* ptr) {
  if (!ptr) return;
  auto it = allocations_.find(static_cast<const char*>(ptr));
  require(it != allocations_.end(), "cuda: release of memory this device did not allocate");
  const size_t bytes = it->second;
  allocations_.erase(it);
  device_free(ptr, bytes);
}

void CudaBackend::require_device_memory(const void* ptr, size_t bytes, const char* what) const {
  const char* p = static_cast<const char*>(ptr);
  auto it = allocations_.upper_bound(p);
  const bool inside = it != allocations_.begin() &&
                      (--it, p + bytes <= it->first + std::max<size_t>(it->second, 1));
  require(inside, "cuda {}: {} bytes at {} are not in memory this device allocated", what, bytes,
          ptr);
}

void* CudaBackend::workspace(size_t bytes) {
  if (bytes <= workspace_bytes_) return workspace_;
  if (workspace_) {
    device_free(workspace_, workspace_bytes_);
    workspace_ = nullptr;
    workspace_bytes_ = 0;
  }
  workspace_ = device_alloc(bytes, "kernel scratch memory");
  workspace_bytes_ = bytes;
  return workspace_;
}

void CudaBackend::copy_to_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  require_device_memory(dst, bytes, "copy to device");
  if (staging_->upload(dst, src, bytes)) return;
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_), "copy to device");
  // The host buffer may be reused as soon as this returns.
  check_cuda(cudaStreamSynchronize(stream_), "copy to device");
}

void CudaBackend::copy_to_host(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  check_cuda(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_), "copy to host");
  check_cuda(cudaStreamSynchronize(stream_), "copy to host");
}

void CudaBackend::fill_zero(void* ptr, size_t bytes) {
  if (bytes == 0) return;
  require_device_memory(ptr, bytes, "fill");
  check_cuda(cudaMemsetAsync(ptr, 0, bytes, stream_), "fill");
}

void CudaBackend::synchronize() { check_cuda(cudaStreamSynchronize(stream_), "synchronize"); }

Precision CudaBackend::precision() const {
  return {.activations = activation_dtype(), .matmul_weights = activation_dtype()};
}

}  // namespace switchyard::backend::cuda
