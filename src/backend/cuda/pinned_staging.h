// Small host-to-device copies that do not wait for the GPU.
//
// A copy from ordinary (pageable) host memory must either wait until the GPU has taken the bytes
// or stage them somewhere the host will not touch again. The tokens and targets of each
// micro-batch are such copies: waiting for them would leave the GPU idle while the host catches
// up. PinnedStaging copies them into one of a few page-locked slots and queues the DMA from
// there; a slot is reused only after the copy queued from it kSlots uploads earlier has run,
// which is long done unless the host is far ahead of the GPU.
#pragma once

#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>

namespace switchyard::backend::cuda {

class PinnedStaging {
 public:
  // Copies up to this many bytes go through the slots; larger ones are not staged.
  static constexpr size_t kMaxBytes = size_t{4} << 20;

  explicit PinnedStaging(cudaStream_t stream) : stream_(stream) {}
  ~PinnedStaging();
  PinnedStaging(const PinnedStaging&) = delete;
  PinnedStaging& operator=(const PinnedStaging&) = delete;

  // Queues the copy of host `src` to device `dst` on the stream; `src` may be reused as soon as
  // this returns. Returns false (and does nothing) when `bytes` is above kMaxBytes.
  bool upload(void* dst, const void* src, size_t bytes);

 private:
  static constexpr size_t kSlots = 4;
  struct Slot {
    void* host = nullptr;
    size_t capacity = 0;
    cudaEvent_t copied = nullptr;  // recorded after the copy queued from this slot
    bool in_use = false;
  };
  cudaStream_t stream_;
  std::array<Slot, kSlots> slots_{};
  size_t next_ = 0;
};

}  // namespace switchyard::backend::cuda
