#include "neuron/memories.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "core/error.h"

namespace switchyard::neuron {

namespace {

// SBUF/PSUM tiles start on 64-byte boundaries; HBM tensors on 64-byte boundaries too.
constexpr int64_t kAllocationAlignment = 64;

}  // namespace

int64_t extent_bytes(const View& v, bool include_rows) {
  int64_t last = 0;
  for (int d = 0; d < v.free_dims(); ++d) last += (v.free_dim(d).size - 1) * v.free_dim(d).stride;
  if (include_rows) last += (v.partitions() - 1) * v.partition_stride();
  return (last + 1) * dtype_bytes(v.dtype());
}

Memories::Memories(const CoreConfig& config, bool hold_values)
    : config_(config),
      hold_values_(hold_values),
      hbm_allocator_(config.hbm_core_bytes()),
      sbuf_allocator_(config.sbuf_partition_bytes),
      psum_allocator_(config.psum_partition_bytes, config.psum_bank_bytes) {
  if (hold_values_) {
    sbuf_.assign(static_cast<size_t>(config_.partitions * partition_stride_bytes(Memory::kSbuf)),
                 0xFF);
    psum_.assign(static_cast<size_t>(config_.partitions * partition_stride_bytes(Memory::kPsum)),
                 0xFF);
  }
}

int64_t Memories::partition_stride_bytes(Memory memory) const {
  return (memory == Memory::kPsum ? config_.psum_partition_bytes : config_.sbuf_partition_bytes) +
         kHostPartitionPadding;
}

RangeAllocator& Memories::allocator(Memory memory) {
  return memory == Memory::kHbm    ? hbm_allocator_
         : memory == Memory::kSbuf ? sbuf_allocator_
                                   : psum_allocator_;
}

const RangeAllocator& Memories::allocator(Memory memory) const {
  return const_cast<Memories*>(this)->allocator(memory);
}

View Memories::allocate(Memory memory, int64_t partitions, const std::vector<int64_t>& free_shape,
                        DType dtype, const std::string& name, uint8_t* external) {
  const char* mem = memory_name(memory);
  require(is_storable(dtype), "{} tile '{}': the NeuronCore's memories hold no {} elements", mem,
          name, nki_dtype_name(dtype));
  require(free_shape.size() <= kMaxFreeDims, "{} tile '{}': at most {} free dimensions, got {}",
          mem, name, kMaxFreeDims, free_shape.size());
  int64_t elements = 1;
  for (int64_t s : free_shape) {
    require(s >= 1, "{} tile '{}': every dimension must be >= 1", mem, name);
    elements *= s;
  }
  int64_t bytes = elements * dtype_bytes(dtype);
  Allocation a;
  a.name = name;
  a.memory = memory;
  a.partitions = partitions;
  a.live = true;
  if (memory == Memory::kHbm) {
    a.bytes = bytes * partitions;
    a.offset = hbm_allocator_.allocate(a.bytes, kAllocationAlignment);
    require(a.offset >= 0,
            "HBM allocation '{}' of {} bytes does not fit: {} of {} bytes free (largest free "
            "block {} bytes)",
            name, a.bytes, hbm_allocator_.free_bytes(), hbm_allocator_.capacity(),
            hbm_allocator_.largest_free());
    if (external) {
      a.hbm_external = external;
    } else if (hold_values_) {
      a.hbm_data = take_spare_hbm_buffer(a.bytes);
      a.hbm_data.assign(static_cast<size_t>(a.bytes), 0xFF);  // NaN in every float dtype
    }
  } else {
    require(partitions >= 1 && partitions <= config_.partitions,
            "{} tile '{}': partition count {} must be in 1..{}", mem, name, partitions,
            config_.partitions);
    RangeAllocator& on_chip = allocator(memory);
    a.bytes = bytes;
    a.offset = on_chip.allocate(bytes, kAllocationAlignment);
    require(a.offset >= 0,
            "{} allocation '{}' of {} bytes per partition does not fit: {} of {} bytes per "
            "partition free (largest free block {} bytes)",
            memory == Memory::kSbuf ? "SBUF" : "PSUM", name, bytes, on_chip.free_bytes(),
            on_chip.capacity(), on_chip.largest_free());
    if (hold_values_) {
      std::vector<uint8_t>& host = memory == Memory::kSbuf ? sbuf_ : psum_;
      const int64_t stride = partition_stride_bytes(memory);
      for (int64_t p = 0; p < config_.partitions; ++p) {
        std::memset(host.data() + p * stride + a.offset, 0xFF, static_cast<size_t>(bytes));
      }
    }
  }
  int32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
    a.generation = (allocations_[slot].generation + 1) & (INT32_MAX >> kSlotBits);
  } else {
    require(allocations_.size() <= static_cast<size_t>(kSlotMask),
            "allocation '{}': more than {} allocations are live at once", name, kSlotMask + 1);
    slot = static_cast<int32_t>(allocations_.size());
    allocations_.emplace_back();
  }
  const int32_t id = a.generation << kSlotBits | slot;
  const int64_t view_offset = memory == Memory::kHbm ? 0 : a.offset;
  const int64_t row_stride = memory == Memory::kHbm ? elements : 0;
  allocations_[slot] = std::move(a);
  return View::whole(memory, id, dtype, view_offset, partitions, row_stride, free_shape);
}

void Memories::release(int32_t id) {
  Allocation& a = allocations_[slot_of(id)];
  a.live = false;
  allocator(a.memory).release(a.offset);
  if (a.memory == Memory::kHbm) {
    keep_spare_hbm_buffer(std::move(a.hbm_data));
    a.hbm_data = {};
    a.hbm_external = nullptr;
  }
  free_slots_.push_back(slot_of(id));
}

const Memories::Allocation* Memories::find(int32_t id) const {
  if (!known(id)) return nullptr;
  const Allocation& a = allocations_[slot_of(id)];
  if (!a.live || a.generation != id >> kSlotBits) return nullptr;
  return &a;
}

const std::string& Memories::name_of(const View& view) const {
  static const std::string kNone = "(none)";
  static const std::string kReleased = "(released)";
  const int32_t id = view.allocation();
  if (!known(id)) return kNone;
  const Allocation& a = allocations_[slot_of(id)];
  // A released allocation keeps its name until its slot is reused.
  return a.generation == id >> kSlotBits ? a.name : kReleased;
}

Region Memories::region_of(const View& v) const {
  const Allocation& a = allocation_of(v);
  if (v.memory() == Memory::kHbm) {
    int64_t b0 = a.offset + v.offset_bytes();
    return Region{slot_of(v.allocation()), 0, 1, b0, b0 + extent_bytes(v, true)};
  }
  return Region{slot_of(v.allocation()), v.partition_start(), v.partition_start() + v.partitions(),
                v.offset_bytes(), v.offset_bytes() + extent_bytes(v, false)};
}

Region Memories::whole_region(int32_t id) const {
  const int32_t slot = slot_of(id);
  const Allocation& a = allocations_[slot];
  return a.memory == Memory::kHbm
             ? Region{slot, 0, 1, a.offset, a.offset + a.bytes}
             : Region{slot, 0, config_.partitions, a.offset, a.offset + a.bytes};
}

uint8_t* Memories::element_base(const View& v, int64_t p) const {
  const Allocation& a = allocation_of(v);
  const int64_t esize = dtype_bytes(v.dtype());
  switch (v.memory()) {
    case Memory::kHbm:
      return const_cast<Allocation&>(a).hbm_bytes() + v.offset_bytes() +
             p * v.partition_stride() * esize;
    case Memory::kSbuf:
      return const_cast<uint8_t*>(sbuf_.data()) +
             (v.partition_start() + p) * partition_stride_bytes(Memory::kSbuf) + v.offset_bytes();
    case Memory::kPsum:
      return const_cast<uint8_t*>(psum_.data()) +
             (v.partition_start() + p) * partition_stride_bytes(Memory::kPsum) + v.offset_bytes();
  }
  return nullptr;
}

std::vector<uint8_t> Memories::take_spare_hbm_buffer(int64_t bytes) {
  // Best fit: the smallest spare that holds `bytes`.
  auto best = spare_hbm_buffers_.end();
  for (auto it = spare_hbm_buffers_.begin(); it != spare_hbm_buffers_.end(); ++it) {
    if (static_cast<int64_t>(it->capacity()) >= bytes &&
        (best == spare_hbm_buffers_.end() || it->capacity() < best->capacity()))
      best = it;
  }
  if (best == spare_hbm_buffers_.end()) return {};
  std::vector<uint8_t> buffer = std::move(*best);
  spare_hbm_buffers_.erase(best);
  return buffer;
}

void Memories::keep_spare_hbm_buffer(std::vector<uint8_t> buffer) {
  // Enough spares for the tensors one kernel launch stages; beyond that the smallest are dropped.
  constexpr size_t kMaxSpareBuffers = 16;
  if (buffer.capacity() == 0) return;
  spare_hbm_buffers_.push_back(std::move(buffer));
  if (spare_hbm_buffers_.size() > kMaxSpareBuffers) {
    auto smallest = std::min_element(
        spare_hbm_buffers_.begin(), spare_hbm_buffers_.end(),
        [](const auto& x, const auto& y) { return x.capacity() < y.capacity(); });
    spare_hbm_buffers_.erase(smallest);
  }
}

}  // namespace switchyard::neuron
