#include "model/gradient_ledger.h"

#include <algorithm>
#include <iterator>

#include "core/error.h"

namespace switchyard::model {

void GradientLedger::open(backend::Backend& backend, void* grads, size_t bytes) {
  backend_ = &backend;
  base_ = static_cast<char*>(grads);
  bytes_ = bytes;
  written_.clear();
}

bool GradientLedger::claim(const Tensor& grad) {
  if (!is_open() || grad.empty() || grad.numel() == 0) return false;
  const char* data = static_cast<const char*>(grad.data);
  require(grad.is_contiguous() && data >= base_ && data + grad.bytes() <= base_ + bytes_,
          "gradient ledger: {} is not a dense view of the model's gradients", grad.describe());
  const size_t begin = static_cast<size_t>(data - base_);
  return claim_bytes(begin, begin + grad.bytes());
}

bool GradientLedger::claim_bytes(size_t begin, size_t end) {
  // The claimed ranges that overlap [begin, end), in order: the first may start before it.
  auto first = written_.upper_bound(begin);
  if (first != written_.begin() && std::prev(first)->second > begin) --first;
  auto last = first;
  size_t union_begin = begin, union_end = end, owed_from = begin;
  for (; last != written_.end() && last->first < end; ++last) {
    if (last->first > owed_from) zero(owed_from, last->first);
    owed_from = std::max(owed_from, last->second);
    union_begin = std::min(union_begin, last->first);
    union_end = std::max(union_end, last->second);
  }
  const bool fresh = first == last;
  if (!fresh && owed_from < end) zero(owed_from, end);
  written_.erase(first, last);
  written_.emplace(union_begin, union_end);
  return fresh;
}

void GradientLedger::settle(size_t offset, size_t bytes) {
  if (!is_open() || bytes == 0) return;
  require(offset + bytes <= bytes_, "gradient ledger: bytes [{}, {}) are outside the {} of the buffer",
          offset, offset + bytes, bytes_);
  if (claim_bytes(offset, offset + bytes)) zero(offset, offset + bytes);
}

void GradientLedger::settle() {
  if (!is_open()) return;
  size_t owed_from = 0;
  for (const auto& [begin, end] : written_) {
    if (begin > owed_from) zero(owed_from, begin);
    owed_from = std::max(owed_from, end);
  }
  if (owed_from < bytes_) zero(owed_from, bytes_);
  close();
}

void GradientLedger::close() {
  backend_ = nullptr;
  written_.clear();
}

void GradientLedger::zero(size_t begin, size_t end) { backend_->fill_zero(base_ + begin, end - begin); }

}  // namespace switchyard::model
