#include "backend/cuda/pinned_staging.h"

#include <algorithm>
#include <cstring>

#include "backend/cuda/cuda_check.h"

namespace switchyard::backend::cuda {

PinnedStaging::~PinnedStaging() {
  for (Slot& slot : slots_) {
    if (slot.in_use) cudaEventSynchronize(slot.copied);
    if (slot.copied) cudaEventDestroy(slot.copied);
    if (slot.host) cudaFreeHost(slot.host);
  }
}

bool PinnedStaging::upload(void* dst, const void* src, size_t bytes) {
  if (bytes > kMaxBytes) return false;
  Slot& slot = slots_[next_];
  next_ = (next_ + 1) % kSlots;
  if (slot.in_use) check_cuda(cudaEventSynchronize(slot.copied), "copy to device (staging)");
  slot.in_use = false;
  if (!slot.copied) {
    check_cuda(cudaEventCreateWithFlags(&slot.copied, cudaEventDisableTiming),
               "copy to device (staging event)");
  }
  if (slot.capacity < bytes) {
    // Grown to the largest copy seen, rounded up, so that a run allocates a slot once or twice.
    const size_t capacity = std::max<size_t>(bytes, 64 << 10);
    if (slot.host) check_cuda(cudaFreeHost(slot.host), "copy to device (staging)");
    slot.host = nullptr;
    slot.capacity = 0;
    check_cuda(cudaHostAlloc(&slot.host, capacity, cudaHostAllocDefault),
               "copy to device (page-locked staging memory)");
    slot.capacity = capacity;
  }
  std::memcpy(slot.host, src, bytes);
  check_cuda(cudaMemcpyAsync(dst, slot.host, bytes, cudaMemcpyHostToDevice, stream_),
             "copy to device");
  check_cuda(cudaEventRecord(slot.copied, stream_), "copy to device (staging event)");
  slot.in_use = true;
  return true;
}

}  // namespace switchyard::backend::cuda
