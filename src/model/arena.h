// Pieces of one allocation for a family's activations.
#pragma once

#include <cstddef>
#include <initializer_list>

#include "core/tensor.h"

namespace switchyard::model {

// Hands out consecutive 64-byte-aligned pieces of one allocation. Each piece is sized for the
// plan's capacity and viewed with the batch's own shape, so one allocation serves every batch up
// to the capacity. With a null base it only counts bytes.
class Arena {
 public:
  explicit Arena(void* base) : base_(static_cast<char*>(base)) {}
  Tensor take(DType dtype, int64_t capacity, std::initializer_list<int64_t> shape) {
    Tensor t = Tensor::dense(base_ ? base_ + used_ : nullptr, dtype, shape);
    used_ += (storage_bytes(dtype, capacity) + 63) / 64 * 64;
    return t;
  }
  size_t used() const { return used_; }

 private:
  char* base_;
  size_t used_ = 0;
};

}  // namespace switchyard::model
