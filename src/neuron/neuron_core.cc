// NeuronCore: memories, allocation, host access, views and the rule checks every engine shares.
#include "neuron/neuron_core.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "neuron/parallel.h"

namespace switchyard::neuron {

namespace {

// SBUF/PSUM tiles start on 64-byte boundaries; HBM tensors on 64-byte boundaries too.
constexpr int64_t kAllocationAlignment = 64;

// Bytes from a view's first element to one past its last, per partition (SBUF/PSUM) or in total
// including the row dimension (HBM).
int64_t extent_bytes(const View& v, bool include_rows) {
  int64_t last = 0;
  for (int d = 0; d < v.free_dims(); ++d) last += (v.free_dim(d).size - 1) * v.free_dim(d).stride;
  if (include_rows) last += (v.partitions() - 1) * v.partition_stride();
  return (last + 1) * dtype_bytes(v.dtype());
}

// Contiguous runs get a loop with a constant stride, which the compiler vectorises.
template <DType D>
void load_run(const uint8_t* src, int64_t n, int64_t stride_bytes, float* out) {
  constexpr int64_t kSize = D == DType::kF32 || D == DType::kI32    ? 4
                            : D == DType::kBF16 || D == DType::kF16 ? 2
                                                                    : 1;
  if (stride_bytes == kSize) {
    for (int64_t i = 0; i < n; ++i) out[i] = load_element(D, src + i * kSize);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = load_element(D, src + i * stride_bytes);
  }
}

template <DType D>
void store_run(uint8_t* dst, int64_t n, int64_t stride_bytes, const float* in) {
  constexpr int64_t kSize = D == DType::kF32 || D == DType::kI32    ? 4
                            : D == DType::kBF16 || D == DType::kF16 ? 2
                                                                    : 1;
  if (stride_bytes == kSize) {
    for (int64_t i = 0; i < n; ++i) store_element(D, dst + i * kSize, in[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) store_element(D, dst + i * stride_bytes, in[i]);
  }
}

using LoadRun = void (*)(const uint8_t*, int64_t, int64_t, float*);
using StoreRun = void (*)(uint8_t*, int64_t, int64_t, const float*);

LoadRun load_run_for(DType d) {
  switch (d) {
    case DType::kF32:
      return load_run<DType::kF32>;
    case DType::kBF16:
      return load_run<DType::kBF16>;
    case DType::kF16:
      return load_run<DType::kF16>;
    case DType::kF8E4M3:
      return load_run<DType::kF8E4M3>;
    case DType::kF8E5M2:
      return load_run<DType::kF8E5M2>;
    case DType::kI32:
      return load_run<DType::kI32>;
    default:
      fail("the simulated NeuronCore has no {} memory", nki_dtype_name(d));
  }
}

StoreRun store_run_for(DType d) {
  switch (d) {
    case DType::kF32:
      return store_run<DType::kF32>;
    case DType::kBF16:
      return store_run<DType::kBF16>;
    case DType::kF16:
      return store_run<DType::kF16>;
    case DType::kF8E4M3:
      return store_run<DType::kF8E4M3>;
    case DType::kF8E5M2:
      return store_run<DType::kF8E5M2>;
    case DType::kI32:
      return store_run<DType::kI32>;
    default:
      fail("the simulated NeuronCore has no {} memory", nki_dtype_name(d));
  }
}

// Calls fn(row_base_offset_elements, count, stride_elements) for each innermost run of a view's
// free pattern, in row-major order.
template <typename Fn>
void for_each_run(const View& v, Fn&& fn) {
  Dim d[kMaxFreeDims];
  int pad = kMaxFreeDims - v.free_dims();
  for (int i = 0; i < kMaxFreeDims; ++i) d[i] = i < pad ? Dim{1, 0} : v.free_dim(i - pad);
  for (int64_t i0 = 0; i0 < d[0].size; ++i0)
    for (int64_t i1 = 0; i1 < d[1].size; ++i1)
      for (int64_t i2 = 0; i2 < d[2].size; ++i2)
        fn(i0 * d[0].stride + i1 * d[1].stride + i2 * d[2].stride, d[3].size, d[3].stride);
}

}  // namespace

NeuronCore::NeuronCore(CoreConfig config)
    : config_(std::move(config)),
      hbm_allocator_(config_.hbm_core_bytes()),
      sbuf_allocator_(config_.sbuf_partition_bytes),
      psum_allocator_(config_.psum_partition_bytes, config_.psum_bank_bytes),
      hbm_ledger_(config_.hbm_core_gbps(), kHbmBucketNs) {
  sbuf_.assign(static_cast<size_t>(config_.partitions * sbuf_host_stride()), 0xFF);
  psum_.assign(static_cast<size_t>(config_.partitions * psum_host_stride()), 0xFF);
  int tracks = kComputeEngines + config_.dma_queues;
  track_free_.assign(tracks, 0.0);
  track_busy_.assign(tracks, 0.0);
  track_count_.assign(tracks, 0);
}

void NeuronCore::set_kernel(std::string name) {
  for (size_t i = 0; i < kernels_.size(); ++i) {
    if (kernels_[i] == name) {
      kernel_ = static_cast<int32_t>(i);
      return;
    }
  }
  kernels_.push_back(std::move(name));
  kernel_ = static_cast<int32_t>(kernels_.size() - 1);
}

View NeuronCore::allocate(Memory memory, int64_t partitions, const std::vector<int64_t>& free_shape,
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
    } else {
      a.hbm_data = take_spare_hbm_buffer(a.bytes);
      a.hbm_data.assign(static_cast<size_t>(a.bytes), 0xFF);  // NaN in every float dtype
    }
  } else {
    require(partitions >= 1 && partitions <= config_.partitions,
            "{} tile '{}': partition count {} must be in 1..{}", mem, name, partitions,
            config_.partitions);
    RangeAllocator& allocator = memory == Memory::kSbuf ? sbuf_allocator_ : psum_allocator_;
    a.bytes = bytes;
    a.offset = allocator.allocate(bytes, kAllocationAlignment);
    require(a.offset >= 0,
            "{} allocation '{}' of {} bytes per partition does not fit: {} of {} bytes per "
            "partition free (largest free block {} bytes)",
            memory == Memory::kSbuf ? "SBUF" : "PSUM", name, bytes, allocator.free_bytes(),
            allocator.capacity(), allocator.largest_free());
    std::vector<uint8_t>& mem_bytes = memory == Memory::kSbuf ? sbuf_ : psum_;
    int64_t pbytes =
        memory == Memory::kSbuf ? sbuf_host_stride() : psum_host_stride();
    for (int64_t p = 0; p < config_.partitions; ++p) {
      std::memset(mem_bytes.data() + p * pbytes + a.offset, 0xFF, static_cast<size_t>(bytes));
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
  Region whole = memory == Memory::kHbm
                     ? Region{slot, 0, 1, a.offset, a.offset + a.bytes}
                     : Region{slot, 0, config_.partitions, a.offset, a.offset + a.bytes};
  deps_.on_allocate(slot, memory, whole);
  int64_t view_offset = memory == Memory::kHbm ? 0 : a.offset;
  int64_t row_stride = memory == Memory::kHbm ? elements : 0;
  allocations_[slot] = std::move(a);
  return View::whole(memory, id, dtype, view_offset, partitions, row_stride, free_shape);
}

View NeuronCore::hbm_alloc(const std::vector<int64_t>& shape, DType dtype,
                           const std::string& name) {
  return hbm_tensor(shape, dtype, name, nullptr);
}

View NeuronCore::hbm_attach(void* data, const std::vector<int64_t>& shape, DType dtype,
                            const std::string& name) {
  require(data != nullptr, "HBM tensor '{}': attach needs memory, got a null pointer", name);
  return hbm_tensor(shape, dtype, name, static_cast<uint8_t*>(data));
}

View NeuronCore::hbm_tensor(const std::vector<int64_t>& shape, DType dtype, const std::string& name,
                            uint8_t* external) {
  require(!shape.empty() && shape.size() <= kMaxFreeDims + 1,
          "HBM tensor '{}': needs 1 to {} dimensions, got {}", name, kMaxFreeDims + 1,
          shape.size());
  require(shape[0] >= 1, "HBM tensor '{}': every dimension must be >= 1", name);
  if (shape.size() == 1) return allocate(Memory::kHbm, 1, shape, dtype, name, external);
  return allocate(Memory::kHbm, shape[0], std::vector<int64_t>(shape.begin() + 1, shape.end()),
                  dtype, name, external);
}

View NeuronCore::sbuf_alloc(int64_t partitions, const std::vector<int64_t>& free_shape, DType dtype,
                            const std::string& name) {
  return allocate(Memory::kSbuf, partitions, free_shape, dtype, name);
}

View NeuronCore::psum_alloc(int64_t partitions, const std::vector<int64_t>& free_shape, DType dtype,
                            const std::string& name) {
  return allocate(Memory::kPsum, partitions, free_shape, dtype, name);
}

void NeuronCore::release(const View& view) {
  require(view.allocation() >= 0 && slot_of(view.allocation()) < static_cast<int32_t>(allocations_.size()),
          "release: the view belongs to no allocation of this core");
  const int32_t slot = slot_of(view.allocation());
  Allocation& a = allocations_[slot];
  require(find_allocation(view.allocation()) != nullptr, "release: '{}' was already released",
          allocation_name(view));
  for (const Region& g : open_groups_) {
    require(g.allocation != slot,
            "kernel '{}': release of PSUM tile '{}' while an accumulation group in it is still "
            "open (its last matmul had stop=false)",
            kernels_[kernel_], a.name);
  }
  a.live = false;
  Region whole = a.memory == Memory::kHbm
                     ? Region{slot, 0, 1, a.offset, a.offset + a.bytes}
                     : Region{slot, 0, config_.partitions, a.offset, a.offset + a.bytes};
  deps_.on_release(slot, a.memory, whole);
  if (a.memory == Memory::kHbm) {
    hbm_allocator_.release(a.offset);
    keep_spare_hbm_buffer(std::move(a.hbm_data));
    a.hbm_data = {};
    a.hbm_external = nullptr;
  } else if (a.memory == Memory::kSbuf) {
    sbuf_allocator_.release(a.offset);
  } else {
    psum_allocator_.release(a.offset);
  }
  free_slots_.push_back(slot);
}

const NeuronCore::Allocation* NeuronCore::find_allocation(int32_t id) const {
  if (id < 0 || slot_of(id) >= static_cast<int32_t>(allocations_.size())) return nullptr;
  const Allocation& a = allocations_[slot_of(id)];
  if (!a.live || a.generation != id >> kSlotBits) return nullptr;
  return &a;
}

std::vector<uint8_t> NeuronCore::take_spare_hbm_buffer(int64_t bytes) {
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

void NeuronCore::keep_spare_hbm_buffer(std::vector<uint8_t> buffer) {
  // Enough spares for the tensors one kernel launch stages; beyond that the largest go back.
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

const std::string& NeuronCore::allocation_name(const View& view) const {
  static const std::string kNone = "(none)";
  static const std::string kReleased = "(released)";
  const int32_t id = view.allocation();
  if (id < 0 || slot_of(id) >= static_cast<int32_t>(allocations_.size())) return kNone;
  const Allocation& a = allocations_[slot_of(id)];
  // A released allocation keeps its name until its slot is reused.
  return a.generation == id >> kSlotBits ? a.name : kReleased;
}

void NeuronCore::rule_error(const char* op, const std::string& message) const {
  fail("kernel '{}', instruction #{} ({}): {}", kernels_[kernel_], instruction_count_, op, message);
}

void NeuronCore::check_view(const char* op, const char* role, const View& v, bool written) const {
  if (v.allocation() < 0 || slot_of(v.allocation()) >= static_cast<int32_t>(allocations_.size()))
    rule_error(op, fmt::format("{} is not a view of any allocation on this core", role));
  const Allocation* found = find_allocation(v.allocation());
  // Formatted only for an error: this check runs for every operand of every instruction.
  auto what = [&] { return fmt::format("{} '{}' {}", role, allocation_name(v), v.describe()); };
  if (found == nullptr)
    rule_error(op, fmt::format("{} uses an allocation that was released", what()));
  const Allocation& a = *found;
  if (v.memory() != a.memory)
    rule_error(op, fmt::format("{} claims memory {} but its allocation is in {}", what(),
                               memory_name(v.memory()), memory_name(a.memory)));
  if (v.partitions() < 1) rule_error(op, fmt::format("{} has no partitions", what()));
  for (int d = 0; d < v.free_dims(); ++d) {
    if (v.free_dim(d).size < 1 || v.free_dim(d).stride < 0)
      rule_error(op, fmt::format("{} free dimension {} needs size >= 1 and stride >= 0", what(), d));
    if (written && v.free_dim(d).stride == 0 && v.free_dim(d).size > 1)
      rule_error(op, fmt::format("{} is written through a broadcast (stride 0) dimension", what()));
  }
  if (v.memory() == Memory::kHbm) {
    if (written && v.partition_stride() == 0 && v.partitions() > 1)
      rule_error(op,
                 fmt::format("{} is written through a broadcast (stride 0) row dimension", what()));
    int64_t end = v.offset_bytes() + extent_bytes(v, true);
    if (v.offset_bytes() < 0 || end > a.bytes)
      rule_error(
          op, fmt::format("{} reaches byte {} of an HBM tensor of {} bytes", what(), end, a.bytes));
  } else {
    if (v.partition_start() < 0 || v.partition_start() + v.partitions() > a.partitions)
      rule_error(op, fmt::format("{} covers partitions {}..{} but the tile has {}", what(),
                                 v.partition_start(), v.partition_start() + v.partitions() - 1,
                                 a.partitions));
    int64_t end = v.offset_bytes() + extent_bytes(v, false);
    if (v.offset_bytes() < a.offset || end > a.offset + a.bytes)
      rule_error(op, fmt::format("{} reaches bytes {}..{} of each partition but the tile holds "
                                 "bytes {}..{}",
                                 what(), v.offset_bytes(), end, a.offset, a.offset + a.bytes));
  }
}

void NeuronCore::check_psum_closed(const char* op, const char* role, const View& v) const {
  if (v.memory() != Memory::kPsum) return;
  Region r = region_of(v);
  for (const Region& g : open_groups_) {
    if (g.overlaps(r))
      rule_error(op, fmt::format("{} '{}' {} is in a PSUM accumulation group that is still open "
                                 "(its last matmul had stop=false)",
                                 role, allocation_name(v), v.describe()));
  }
}

void NeuronCore::check_engine_operand(const char* op, const char* role, Engine engine,
                                      const View& v, bool written) const {
  check_view(op, role, v, written);
  auto what = [&] { return fmt::format("{} '{}' {}", role, allocation_name(v), v.describe()); };
  if (v.memory() == Memory::kHbm)
    rule_error(op, fmt::format("{}: {} cannot access HBM (move data with a DMA first)", what(),
                               engine_name(engine)));
  if (engine == Engine::kGpSimd && v.memory() == Memory::kPsum)
    rule_error(op, fmt::format("{}: GpSimd cannot access PSUM", what()));
  // Partition start alignment: > 64 partitions start at 0; 33..64 at 0 or 64; <= 32 at 0, 32,
  // 64 or 96.
  int64_t start = v.partition_start();
  int64_t count = v.partitions();
  bool aligned = count > 64   ? start == 0
                 : count > 32 ? (start == 0 || start == 64)
                              : start % 32 == 0;
  if (!aligned)
    rule_error(op, fmt::format("{}: a tile of {} partitions cannot start at partition {} (over 64 "
                               "partitions start at 0; 33-64 at 0 or 64; up to 32 at 0/32/64/96)",
                               what(), count, start));
  if (engine != Engine::kTensor) {
    int64_t limit = v.memory() == Memory::kPsum ? 4096 : 65536;
    if (v.free_size() > limit)
      rule_error(op, fmt::format("{}: free size {} exceeds the {} limit of {} elements per "
                                 "partition for {}",
                                 what(), v.free_size(), memory_name(v.memory()), limit,
                                 engine_name(engine)));
  }
  if (!written) check_psum_closed(op, role, v);
}

Region NeuronCore::region_of(const View& v) const {
  const Allocation& a = allocation_of(v);
  if (v.memory() == Memory::kHbm) {
    int64_t b0 = a.offset + v.offset_bytes();
    return Region{slot_of(v.allocation()), 0, 1, b0, b0 + extent_bytes(v, true)};
  }
  return Region{slot_of(v.allocation()), v.partition_start(), v.partition_start() + v.partitions(),
                v.offset_bytes(), v.offset_bytes() + extent_bytes(v, false)};
}

uint8_t* NeuronCore::element_base(const View& v, int64_t p) const {
  const Allocation& a = allocation_of(v);
  int64_t esize = dtype_bytes(v.dtype());
  switch (v.memory()) {
    case Memory::kHbm:
      return const_cast<Allocation&>(a).hbm_bytes() + v.offset_bytes() +
             p * v.partition_stride() * esize;
    case Memory::kSbuf:
      return const_cast<uint8_t*>(sbuf_.data()) +
             (v.partition_start() + p) * sbuf_host_stride() + v.offset_bytes();
    case Memory::kPsum:
      return const_cast<uint8_t*>(psum_.data()) +
             (v.partition_start() + p) * psum_host_stride() + v.offset_bytes();
  }
  return nullptr;
}

namespace {

// Whether writes to different partitions of the view can never touch the same bytes (always true
// in SBUF/PSUM; for HBM rows, when a row's extent fits within the row stride).
bool partitions_disjoint(const View& v) {
  if (v.memory() != Memory::kHbm || v.partitions() == 1) return true;
  int64_t last = 0;
  for (int d = 0; d < v.free_dims(); ++d) last += (v.free_dim(d).size - 1) * v.free_dim(d).stride;
  return v.partition_stride() > last;
}

}  // namespace

void NeuronCore::load_partition(const View& v, int64_t p, float* out) const {
  LoadRun run = load_run_for(v.dtype());
  const int64_t esize = dtype_bytes(v.dtype());
  const uint8_t* base = element_base(v, p);
  for_each_run(v, [&](int64_t offset, int64_t n, int64_t stride) {
    run(base + offset * esize, n, stride * esize, out);
    out += n;
  });
}

void NeuronCore::store_partition(const View& v, int64_t p, const float* values) {
  StoreRun run = store_run_for(v.dtype());
  const int64_t esize = dtype_bytes(v.dtype());
  uint8_t* base = element_base(v, p);
  for_each_run(v, [&](int64_t offset, int64_t n, int64_t stride) {
    run(base + offset * esize, n, stride * esize, values);
    values += n;
  });
}

void NeuronCore::load(const View& v, float* out) const {
  const int64_t per_partition = v.free_size();
  for_each_partition(v.partitions(), v.elements(),
                     [&](int64_t p) { load_partition(v, p, out + p * per_partition); });
}

void NeuronCore::store(const View& v, const float* values) {
  const int64_t per_partition = v.free_size();
  // Rows that share bytes are written in order, by one thread.
  const int64_t threaded_elements = partitions_disjoint(v) ? v.elements() : 0;
  for_each_partition(v.partitions(), threaded_elements,
                     [&](int64_t p) { store_partition(v, p, values + p * per_partition); });
}

bool NeuronCore::rowwise_safe(const View& out, std::initializer_list<const View*> inputs) {
  for (const View* in : inputs) {
    if (in->memory() != out.memory() || in->partition_start() == out.partition_start()) continue;
    const bool disjoint = in->partition_start() + in->partitions() <= out.partition_start() ||
                          out.partition_start() + out.partitions() <= in->partition_start();
    if (!disjoint) return false;
  }
  return true;
}

void NeuronCore::gather_partition_bytes(const View& v, int64_t p, uint8_t* out) const {
  const int64_t esize = dtype_bytes(v.dtype());
  const uint8_t* base = element_base(v, p);
  for_each_run(v, [&](int64_t offset, int64_t n, int64_t stride) {
    if (stride == 1) {
      std::memcpy(out, base + offset * esize, static_cast<size_t>(n * esize));
    } else {
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(out + i * esize, base + (offset + i * stride) * esize, esize);
    }
    out += n * esize;
  });
}

void NeuronCore::scatter_partition_bytes(const View& v, int64_t p, const uint8_t* in) {
  const int64_t esize = dtype_bytes(v.dtype());
  uint8_t* base = element_base(v, p);
  for_each_run(v, [&](int64_t offset, int64_t n, int64_t stride) {
    if (stride == 1) {
      std::memmove(base + offset * esize, in, static_cast<size_t>(n * esize));
    } else {
      for (int64_t i = 0; i < n; ++i)
        std::memcpy(base + (offset + i * stride) * esize, in + i * esize, esize);
    }
    in += n * esize;
  });
}

void NeuronCore::gather_bytes(const View& v, uint8_t* out) const {
  const int64_t row_bytes = v.free_size() * dtype_bytes(v.dtype());
  for (int64_t p = 0; p < v.partitions(); ++p) gather_partition_bytes(v, p, out + p * row_bytes);
}

void NeuronCore::scatter_bytes(const View& v, const uint8_t* in) {
  const int64_t row_bytes = v.free_size() * dtype_bytes(v.dtype());
  for (int64_t p = 0; p < v.partitions(); ++p) scatter_partition_bytes(v, p, in + p * row_bytes);
}

bool NeuronCore::copy_by_partition(const View& dst, const View& src) {
  // Only copies with an SBUF end: SBUF tiles never share bytes with each other or with HBM. Two
  // HBM tensors may (a backend can attach the same memory twice), and rows of one tile may
  // overlap when a kernel shifts data within it; those go through the staged copy, which reads
  // everything before writing anything.
  if (dst.allocation() == src.allocation() ||
      (dst.memory() != Memory::kSbuf && src.memory() != Memory::kSbuf) ||
      !partitions_disjoint(dst))
    return false;
  const bool same_dtype = dst.dtype() == src.dtype();
  const bool contiguous = same_dtype && dst.rows_contiguous() && src.rows_contiguous();
  const int64_t F = dst.free_size();
  const int64_t row_bytes = F * dtype_bytes(dst.dtype());
  // Room for every row, so that threads never share a row buffer.
  const int64_t staging_floats =
      contiguous ? 0 : same_dtype ? (dst.partitions() * row_bytes + 3) / 4 : dst.partitions() * F;
  std::span<float> staging = scratch(1, staging_floats);
  for_each_partition(dst.partitions(), dst.elements(), [&](int64_t p) {
    if (contiguous) {
      std::memmove(element_base(dst, p), element_base(src, p), static_cast<size_t>(row_bytes));
    } else if (same_dtype) {  // bit-exact, also for NaN payloads and large int32 values
      uint8_t* row = reinterpret_cast<uint8_t*>(staging.data()) + p * row_bytes;
      gather_partition_bytes(src, p, row);
      scatter_partition_bytes(dst, p, row);
    } else {
      float* row = staging.data() + p * F;
      load_partition(src, p, row);
      store_partition(dst, p, row);
    }
  });
  return true;
}

std::vector<float> NeuronCore::read(const View& view) const {
  std::vector<float> out(static_cast<size_t>(view.elements()));
  read(view, out);
  return out;
}

void NeuronCore::read(const View& view, std::span<float> out) const {
  check_view("host read", "view", view, false);
  require(static_cast<int64_t>(out.size()) == view.elements(),
          "host read of '{}' {}: room for {} values, the view holds {}", allocation_name(view),
          view.describe(), out.size(), view.elements());
  load(view, out.data());
}

void NeuronCore::write(const View& view, std::span<const float> values) {
  check_view("host write", "view", view, true);
  require(static_cast<int64_t>(values.size()) == view.elements(),
          "host write to '{}' {}: got {} values, the view holds {}", allocation_name(view),
          view.describe(), values.size(), view.elements());
  store(view, values.data());
}

std::span<float> NeuronCore::scratch(int index, int64_t n) const {
  std::vector<float>& buffer = scratch_[static_cast<size_t>(index)];
  if (buffer.size() < static_cast<size_t>(n)) buffer.resize(static_cast<size_t>(n));
  return {buffer.data(), static_cast<size_t>(n)};
}

std::span<float> NeuronCore::load_operand(const Operand& s, int64_t partitions,
                                          int scratch_index) const {
  std::span<float> out = scratch(scratch_index, partitions);
  if (s.is_view()) {
    load(s.view(), out.data());  // checked by the instruction: [partitions, 1]
  } else {
    std::fill(out.begin(), out.end(), s.value());
  }
  return out;
}

}  // namespace switchyard::neuron
