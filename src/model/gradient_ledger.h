// Which parts of a model's gradient buffer a training step has written, so that the step need not
// zero the whole buffer before its backward pass (a write of every gradient, then a read of it by
// every product that adds to it). A gradient's first write in the step sets it
// (ops::LinearBackward's overwrite) or zeroes it just before an op adds to it; when the backward
// pass ends, whatever no op wrote is zeroed. Parts are byte ranges of the buffer, so views of one
// parameter (q, k and v inside a packed q|k|v) are tracked whatever their layout.
#pragma once

#include <cstddef>
#include <map>

#include "backend/backend.h"
#include "core/tensor.h"

namespace switchyard::model {

class GradientLedger {
 public:
  // Starts a step over the gradient buffer [grads, grads + bytes): every byte owes a zero.
  void open(backend::Backend& backend, void* grads, size_t bytes);
  bool is_open() const { return backend_ != nullptr; }
  // Records that an op is about to write `grad` (a view of the buffer). True when no part of it
  // was written before in this step: the op may set it whole. Otherwise zeroes the parts still
  // owed, so that an op adding to it adds to zeros there, and returns false.
  bool claim(const Tensor& grad);
  // Zeroes the parts of bytes [offset, offset + bytes) of the buffer no op claimed, and claims them:
  // a part of the gradients that is complete before the step ends (a layer's, for replicas).
  void settle(size_t offset, size_t bytes);
  // Zeroes every part no op claimed and closes the ledger.
  void settle();
  // Closes the ledger without zeroing (the caller zeroed the whole buffer).
  void close();

 private:
  // claim() over bytes [begin, end) of the buffer.
  bool claim_bytes(size_t begin, size_t end);
  void zero(size_t begin, size_t end);

  backend::Backend* backend_ = nullptr;
  char* base_ = nullptr;
  size_t bytes_ = 0;
  std::map<size_t, size_t> written_;  // disjoint byte ranges claimed so far: begin -> end
};

}  // namespace switchyard::model
