#include "neuron/range_allocator.h"

#include <algorithm>
#include <iterator>

namespace switchyard::neuron {

RangeAllocator::RangeAllocator(int64_t capacity, int64_t bank_bytes)
    : capacity_(capacity), bank_bytes_(bank_bytes) {
  if (capacity > 0) free_[0] = capacity;
}

int64_t RangeAllocator::allocate(int64_t bytes, int64_t alignment) {
  if (bytes <= 0) return -1;
  if (bank_bytes_ > 0 && bytes > bank_bytes_) alignment = std::max(alignment, bank_bytes_);
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    int64_t block_start = it->first;
    int64_t block_end = it->first + it->second;
    int64_t start = (block_start + alignment - 1) / alignment * alignment;
    if (bank_bytes_ > 0 && bytes <= bank_bytes_) {
      // Move to the next bank if the range would straddle a bank boundary.
      if (start / bank_bytes_ != (start + bytes - 1) / bank_bytes_) {
        start = (start / bank_bytes_ + 1) * bank_bytes_;
      }
    }
    if (start + bytes > block_end) continue;
    free_.erase(it);
    if (start > block_start) free_[block_start] = start - block_start;
    if (start + bytes < block_end) free_[start + bytes] = block_end - (start + bytes);
    live_[start] = bytes;
    used_ += bytes;
    high_water_ = std::max(high_water_, used_);
    return start;
  }
  return -1;
}

void RangeAllocator::release(int64_t offset) {
  auto live = live_.find(offset);
  if (live == live_.end()) return;
  int64_t start = offset;
  int64_t size = live->second;
  live_.erase(live);
  used_ -= size;
  auto next = free_.lower_bound(start);
  if (next != free_.end() && next->first == start + size) {
    size += next->second;
    next = free_.erase(next);
  }
  if (next != free_.begin()) {
    auto prev = std::prev(next);
    if (prev->first + prev->second == start) {
      start = prev->first;
      size += prev->second;
      free_.erase(prev);
    }
  }
  free_[start] = size;
}

int64_t RangeAllocator::largest_free() const {
  int64_t best = 0;
  for (const auto& [offset, size] : free_) best = std::max(best, size);
  return best;
}

}  // namespace switchyard::neuron
