// First-fit allocator of byte ranges [0, capacity), used for SBUF and PSUM (per-partition byte
// offsets; a tile reserves its range in every partition, as NKI's allocator does) and for the
// HBM address space of the simulated core.
#pragma once

#include <cstdint>
#include <map>

namespace switchyard::neuron {

class RangeAllocator {
 public:
  // `bank_bytes` > 0 keeps allocations of at most one bank inside a single bank and starts larger
  // ones on a bank boundary (PSUM); 0 disables that.
  explicit RangeAllocator(int64_t capacity, int64_t bank_bytes = 0);

  // Offset of a fresh range of `bytes` aligned to `alignment`, or -1 when no free range fits.
  int64_t allocate(int64_t bytes, int64_t alignment);
  // Returns a range obtained from allocate(); `offset` must be the start of a live allocation.
  void release(int64_t offset);

  int64_t capacity() const { return capacity_; }
  int64_t used() const { return used_; }
  int64_t free_bytes() const { return capacity_ - used_; }
  int64_t largest_free() const;
  int64_t high_water() const { return high_water_; }
  bool is_allocated(int64_t offset) const { return live_.count(offset) != 0; }

 private:
  int64_t capacity_;
  int64_t bank_bytes_;
  int64_t used_ = 0;
  int64_t high_water_ = 0;
  std::map<int64_t, int64_t> free_;  // offset -> size, coalesced
  std::map<int64_t, int64_t> live_;  // offset -> size
};

}  // namespace switchyard::neuron
