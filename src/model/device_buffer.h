// One device allocation owned by RAII: released through the backend that made it.
#pragma once

#include <cstddef>
#include <utility>

#include "backend/backend.h"

namespace switchyard::model {

class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // Allocates `floats` zeroed floats on `backend`.
  DeviceBuffer(backend::Backend& backend, size_t floats) : backend_(&backend), floats_(floats) {
    if (floats == 0) return;
    data_ = static_cast<float*>(backend.allocate_zeroed(floats * sizeof(float)));
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept { *this = std::move(other); }
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    std::swap(backend_, other.backend_);
    std::swap(data_, other.data_);
    std::swap(floats_, other.floats_);
    return *this;
  }
  ~DeviceBuffer() {
    if (data_) backend_->release(data_);
  }

  float* get() const { return data_; }
  // Backend::make_resident over the buffer's first `bytes`; returns how many of them are resident.
  size_t make_resident(size_t bytes) { return data_ ? backend_->make_resident(data_, bytes) : bytes; }
  size_t size() const { return floats_; }

 private:
  backend::Backend* backend_ = nullptr;
  float* data_ = nullptr;
  size_t floats_ = 0;
};

}  // namespace switchyard::model
