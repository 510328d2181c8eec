// The memories of one simulated NeuronCore: SBUF and PSUM (128 partitions of bytes each) and the
// core's share of HBM, their allocators, and the allocations kernels hold in them.
//
// An allocation is named by an id that its views carry: generation << kSlotBits | slot. Slots of
// released allocations are reused (a long training run makes millions of allocations), and the
// generation tells a view of the released allocation from one of the slot's new tenant.
//
// Memories that hold values (ExecutionMode::kFunctional) keep SBUF and PSUM as host arrays and
// give each HBM tensor host bytes, filled with all-ones bytes (NaN in every float dtype) when
// allocated. Memories that do not (kTimingOnly) keep only the allocators and the allocation
// records; an HBM tensor attached from caller memory still points at it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "neuron/config.h"
#include "neuron/dependency_tracker.h"
#include "neuron/range_allocator.h"
#include "neuron/view.h"

namespace switchyard::neuron {

// Bytes from a view's first element to one past its last, per partition (SBUF/PSUM) or in total
// including the row dimension (HBM).
int64_t extent_bytes(const View& v, bool include_rows);

class Memories {
 public:
  struct Allocation {
    std::string name;
    Memory memory = Memory::kSbuf;
    int64_t offset = 0;  // SBUF/PSUM: byte offset within each partition; HBM: virtual address
    int64_t bytes = 0;   // per partition (SBUF/PSUM) or total (HBM)
    int64_t partitions = 0;
    bool live = false;
    int32_t generation = 0;           // bumped each time the slot is reused
    std::vector<uint8_t> hbm_data;    // HBM only: owned bytes (none without values)
    uint8_t* hbm_external = nullptr;  // HBM only: the caller's bytes (attach)
    uint8_t* hbm_bytes() { return hbm_external ? hbm_external : hbm_data.data(); }
  };

  Memories(const CoreConfig& config, bool hold_values);
  Memories(const Memories&) = delete;
  Memories& operator=(const Memories&) = delete;

  bool hold_values() const { return hold_values_; }

  // A fresh allocation of `partitions` x free_shape elements of `dtype` in `memory` (HBM: the
  // caller's bytes when `external` is given). Throws Error when the dtype is not storable, a
  // shape is bad or the memory has no room, saying what was asked and what is free.
  View allocate(Memory memory, int64_t partitions, const std::vector<int64_t>& free_shape,
                DType dtype, const std::string& name, uint8_t* external = nullptr);
  // Frees the live allocation `id` names (the caller has checked that it is live).
  void release(int32_t id);

  static int32_t slot_of(int32_t id) { return id & kSlotMask; }
  // Whether `id` could name an allocation of this core (allocated at some time).
  bool known(int32_t id) const {
    return id >= 0 && slot_of(id) < static_cast<int32_t>(allocations_.size());
  }
  // The live allocation `id` names, or nullptr if it names none (never allocated, or released).
  const Allocation* find(int32_t id) const;
  // The allocation of a view that the rules have accepted.
  const Allocation& allocation_of(const View& v) const { return allocations_[slot_of(v.allocation())]; }
  Memory memory_of_slot(int32_t slot) const { return allocations_[slot].memory; }
  // The name of the view's allocation; "(released)" once its slot has a new tenant.
  const std::string& name_of(const View& view) const;

  // The region (for dependencies) a view of a live allocation covers, and that of a whole
  // allocation.
  Region region_of(const View& v) const;
  Region whole_region(int32_t id) const;

  // Whether the view's elements have host bytes: always when memories hold values; otherwise
  // only for HBM tensors attached from caller memory.
  bool has_bytes(const View& v) const {
    return hold_values_ || (v.memory() == Memory::kHbm && allocation_of(v).hbm_external);
  }
  // Host address of element 0 of partition (row) p of a view whose memory has bytes.
  uint8_t* element_base(const View& v, int64_t partition) const;
  // Host bytes between consecutive partitions of SBUF / PSUM (the partition size plus padding).
  int64_t partition_stride_bytes(Memory memory) const;

  const RangeAllocator& allocator(Memory memory) const;

 private:
  static constexpr int kSlotBits = 16;
  static constexpr int32_t kSlotMask = (1 << kSlotBits) - 1;
  // Partitions a power-of-two multiple of 4 KiB apart map the same elements of every row to the
  // same few host cache sets, which halved the speed of the matmul kernel writing PSUM rows.
  static constexpr int64_t kHostPartitionPadding = 256;

  RangeAllocator& allocator(Memory memory);
  std::vector<uint8_t> take_spare_hbm_buffer(int64_t bytes);
  void keep_spare_hbm_buffer(std::vector<uint8_t> buffer);

  const CoreConfig& config_;
  bool hold_values_;
  std::vector<Allocation> allocations_;  // by slot
  std::vector<int32_t> free_slots_;
  // Owned HBM buffers of released tensors, kept for the next allocations: a fresh buffer per
  // kernel launch would cost page faults on every launch.
  std::vector<std::vector<uint8_t>> spare_hbm_buffers_;
  RangeAllocator hbm_allocator_;
  RangeAllocator sbuf_allocator_;
  RangeAllocator psum_allocator_;
  std::vector<uint8_t> sbuf_;  // partitions x partition_stride_bytes(kSbuf), when holding values
  std::vector<uint8_t> psum_;  // partitions x partition_stride_bytes(kPsum), when holding values
};

}  // namespace switchyard::neuron
