// NeuronCore: memories, allocation, host access, views and the rule checks every engine shares.
#include "neuron/neuron_core.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"

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
template <Dtype D>
void load_run(const uint8_t* src, int64_t n, int64_t stride_bytes, float* out) {
  constexpr int64_t kSize = D == Dtype::kF32 || D == Dtype::kI32    ? 4
                            : D == Dtype::kBF16 || D == Dtype::kF16 ? 2
                                                                    : 1;
  if (stride_bytes == kSize) {
    for (int64_t i = 0; i < n; ++i) out[i] = load_element(D, src + i * kSize);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = load_element(D, src + i * stride_bytes);
  }
}

template <Dtype D>
void store_run(uint8_t* dst, int64_t n, int64_t stride_bytes, const float* in) {
  constexpr int64_t kSize = D == Dtype::kF32 || D == Dtype::kI32    ? 4
                            : D == Dtype::kBF16 || D == Dtype::kF16 ? 2
                                                                    : 1;
  if (stride_bytes == kSize) {
    for (int64_t i = 0; i < n; ++i) store_element(D, dst + i * kSize, in[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) store_element(D, dst + i * stride_bytes, in[i]);
  }
}

using LoadRun = void (*)(const uint8_t*, int64_t, int64_t, float*);
using StoreRun = void (*)(uint8_t*, int64_t, int64_t, const float*);

LoadRun load_run_for(Dtype d) {
  switch (d) {
    case Dtype::kF32:
      return load_run<Dtype::kF32>;
    case Dtype::kBF16:
      return load_run<Dtype::kBF16>;
    case Dtype::kF16:
      return load_run<Dtype::kF16>;
    case Dtype::kF8E4M3:
      return load_run<Dtype::kF8E4M3>;
    case Dtype::kF8E5M2:
      return load_run<Dtype::kF8E5M2>;
    case Dtype::kI32:
      return load_run<Dtype::kI32>;
  }
  return nullptr;
}

StoreRun store_run_for(Dtype d) {
  switch (d) {
    case Dtype::kF32:
      return store_run<Dtype::kF32>;
    case Dtype::kBF16:
      return store_run<Dtype::kBF16>;
    case Dtype::kF16:
      return store_run<Dtype::kF16>;
    case Dtype::kF8E4M3:
      return store_run<Dtype::kF8E4M3>;
    case Dtype::kF8E5M2:
      return store_run<Dtype::kF8E5M2>;
    case Dtype::kI32:
      return store_run<Dtype::kI32>;
  }
  return nullptr;
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
  sbuf_.assign(static_cast<size_t>(config_.partitions * config_.sbuf_partition_bytes), 0xFF);
  psum_.assign(static_cast<size_t>(config_.partitions * config_.psum_partition_bytes), 0xFF);
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
                          Dtype dtype, const std::string& name, uint8_t* external) {
  const char* mem = memory_name(memory);
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
        memory == Memory::kSbuf ? config_.sbuf_partition_bytes : config_.psum_partition_bytes;
    for (int64_t p = 0; p < config_.partitions; ++p) {
      std::memset(mem_bytes.data() + p * pbytes + a.offset, 0xFF, static_cast<size_t>(bytes));
    }
  }
  int32_t id = static_cast<int32_t>(allocations_.size());
  Region whole = memory == Memory::kHbm
                     ? Region{id, 0, 1, a.offset, a.offset + a.bytes}
                     : Region{id, 0, config_.partitions, a.offset, a.offset + a.bytes};
  deps_.on_allocate(id, memory, whole);
  int64_t view_offset = memory == Memory::kHbm ? 0 : a.offset;
  int64_t row_stride = memory == Memory::kHbm ? elements : 0;
  allocations_.push_back(std::move(a));
  return View::whole(memory, id, dtype, view_offset, partitions, row_stride, free_shape);
}

View NeuronCore::hbm_alloc(const std::vector<int64_t>& shape, Dtype dtype,
                           const std::string& name) {
  return hbm_tensor(shape, dtype, name, nullptr);
}

View NeuronCore::hbm_attach(void* data, const std::vector<int64_t>& shape, Dtype dtype,
                            const std::string& name) {
  require(data != nullptr, "HBM tensor '{}': attach needs memory, got a null pointer", name);
  return hbm_tensor(shape, dtype, name, static_cast<uint8_t*>(data));
}

View NeuronCore::hbm_tensor(const std::vector<int64_t>& shape, Dtype dtype, const std::string& name,
                            uint8_t* external) {
  require(!shape.empty() && shape.size() <= kMaxFreeDims + 1,
          "HBM tensor '{}': needs 1 to {} dimensions, got {}", name, kMaxFreeDims + 1,
          shape.size());
  require(shape[0] >= 1, "HBM tensor '{}': every dimension must be >= 1", name);
  if (shape.size() == 1) return allocate(Memory::kHbm, 1, shape, dtype, name, external);
  return allocate(Memory::kHbm, shape[0], std::vector<int64_t>(shape.begin() + 1, shape.end()),
                  dtype, name, external);
}

View NeuronCore::sbuf_alloc(int64_t partitions, const std::vector<int64_t>& free_shape, Dtype dtype,
                            const std::string& name) {
  return allocate(Memory::kSbuf, partitions, free_shape, dtype, name);
}

View NeuronCore::psum_alloc(int64_t partitions, const std::vector<int64_t>& free_shape, Dtype dtype,
                            const std::string& name) {
  return allocate(Memory::kPsum, partitions, free_shape, dtype, name);
}

void NeuronCore::release(const View& view) {
  require(view.allocation() >= 0 && view.allocation() < static_cast<int32_t>(allocations_.size()),
          "release: the view belongs to no allocation of this core");
  Allocation& a = allocations_[view.allocation()];
  require(a.live, "release: '{}' was already released", a.name);
  for (const Region& g : open_groups_) {
    require(g.allocation != view.allocation(),
            "kernel '{}': release of PSUM tile '{}' while an accumulation group in it is still "
            "open (its last matmul had stop=false)",
            kernels_[kernel_], a.name);
  }
  a.live = false;
  Region whole =
      a.memory == Memory::kHbm
          ? Region{view.allocation(), 0, 1, a.offset, a.offset + a.bytes}
          : Region{view.allocation(), 0, config_.partitions, a.offset, a.offset + a.bytes};
  deps_.on_release(view.allocation(), a.memory, whole);
  if (a.memory == Memory::kHbm) {
    hbm_allocator_.release(a.offset);
    std::vector<uint8_t>().swap(a.hbm_data);
    a.hbm_external = nullptr;
  } else if (a.memory == Memory::kSbuf) {
    sbuf_allocator_.release(a.offset);
  } else {
    psum_allocator_.release(a.offset);
  }
}

const std::string& NeuronCore::allocation_name(const View& view) const {
  static const std::string kNone = "(none)";
  if (view.allocation() < 0 || view.allocation() >= static_cast<int32_t>(allocations_.size()))
    return kNone;
  return allocations_[view.allocation()].name;
}

void NeuronCore::rule_error(const char* op, const std::string& message) const {
  fail("kernel '{}', instruction #{} ({}): {}", kernels_[kernel_], instruction_count_, op, message);
}

void NeuronCore::check_view(const char* op, const char* role, const View& v, bool written) const {
  if (v.allocation() < 0 || v.allocation() >= static_cast<int32_t>(allocations_.size()))
    rule_error(op, fmt::format("{} is not a view of any allocation on this core", role));
  const Allocation& a = allocations_[v.allocation()];
  std::string what = fmt::format("{} '{}' {}", role, a.name, v.describe());
  if (!a.live) rule_error(op, fmt::format("{} uses an allocation that was released", what));
  if (v.memory() != a.memory)
    rule_error(op, fmt::format("{} claims memory {} but its allocation is in {}", what,
                               memory_name(v.memory()), memory_name(a.memory)));
  if (v.partitions() < 1) rule_error(op, fmt::format("{} has no partitions", what));
  for (int d = 0; d < v.free_dims(); ++d) {
    if (v.free_dim(d).size < 1 || v.free_dim(d).stride < 0)
      rule_error(op, fmt::format("{} free dimension {} needs size >= 1 and stride >= 0", what, d));
    if (written && v.free_dim(d).stride == 0 && v.free_dim(d).size > 1)
      rule_error(op, fmt::format("{} is written through a broadcast (stride 0) dimension", what));
  }
  if (v.memory() == Memory::kHbm) {
    if (written && v.partition_stride() == 0 && v.partitions() > 1)
      rule_error(op,
                 fmt::format("{} is written through a broadcast (stride 0) row dimension", what));
    int64_t end = v.offset_bytes() + extent_bytes(v, true);
    if (v.offset_bytes() < 0 || end > a.bytes)
      rule_error(
          op, fmt::format("{} reaches byte {} of an HBM tensor of {} bytes", what, end, a.bytes));
  } else {
    if (v.partition_start() < 0 || v.partition_start() + v.partitions() > a.partitions)
      rule_error(op, fmt::format("{} covers partitions {}..{} but the tile has {}", what,
                                 v.partition_start(), v.partition_start() + v.partitions() - 1,
                                 a.partitions));
    int64_t end = v.offset_bytes() + extent_bytes(v, false);
    if (v.offset_bytes() < a.offset || end > a.offset + a.bytes)
      rule_error(op, fmt::format("{} reaches bytes {}..{} of each partition but the tile holds "
                                 "bytes {}..{}",
                                 what, v.offset_bytes(), end, a.offset, a.offset + a.bytes));
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
  std::string what = fmt::format("{} '{}' {}", role, allocation_name(v), v.describe());
  if (v.memory() == Memory::kHbm)
    rule_error(op, fmt::format("{}: {} cannot access HBM (move data with a DMA first)", what,
                               engine_name(engine)));
  if (engine == Engine::kGpSimd && v.memory() == Memory::kPsum)
    rule_error(op, fmt::format("{}: GpSimd cannot access PSUM", what));
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
                               what, count, start));
  if (engine != Engine::kTensor) {
    int64_t limit = v.memory() == Memory::kPsum ? 4096 : 65536;
    if (v.free_size() > limit)
      rule_error(op, fmt::format("{}: free size {} exceeds the {} limit of {} elements per "
                                 "partition for {}",
                                 what, v.free_size(), memory_name(v.memory()), limit,
                                 engine_name(engine)));
  }
  if (!written) check_psum_closed(op, role, v);
}

Region NeuronCore::region_of(const View& v) const {
  const Allocation& a = allocations_[v.allocation()];
  if (v.memory() == Memory::kHbm) {
    int64_t b0 = a.offset + v.offset_bytes();
    return Region{v.allocation(), 0, 1, b0, b0 + extent_bytes(v, true)};
  }
  return Region{v.allocation(), v.partition_start(), v.partition_start() + v.partitions(),
                v.offset_bytes(), v.offset_bytes() + extent_bytes(v, false)};
}

uint8_t* NeuronCore::element_base(const View& v, int64_t p) const {
  const Allocation& a = allocations_[v.allocation()];
  int64_t esize = dtype_bytes(v.dtype());
  switch (v.memory()) {
    case Memory::kHbm:
      return const_cast<Allocation&>(a).hbm_bytes() + v.offset_bytes() +
             p * v.partition_stride() * esize;
    case Memory::kSbuf:
      return const_cast<uint8_t*>(sbuf_.data()) +
             (v.partition_start() + p) * config_.sbuf_partition_bytes + v.offset_bytes();
    case Memory::kPsum:
      return const_cast<uint8_t*>(psum_.data()) +
             (v.partition_start() + p) * config_.psum_partition_bytes + v.offset_bytes();
  }
  return nullptr;
}

void NeuronCore::load(const View& v, float* out) const {
  LoadRun run = load_run_for(v.dtype());
  int64_t esize = dtype_bytes(v.dtype());
  for (int64_t p = 0; p < v.partitions(); ++p) {
    const uint8_t* base = element_base(v, p);
    for_each_run(v, [&](int64_t offset, int64_t n, int64_t stride) {
      run(base + offset * esize, n, stride * esize, out);
      out += n;
    });
  }
}

void NeuronCore::store(const View& v, const float* values) {
  StoreRun run = store_run_for(v.dtype());
  int64_t esize = dtype_bytes(v.dtype());
  for (int64_t p = 0; p < v.partitions(); ++p) {
    uint8_t* base = element_base(v, p);
    for_each_run(v, [&](int64_t offset, int64_t n, int64_t stride) {
      run(base + offset * esize, n, stride * esize, values);
      values += n;
    });
  }
}

void NeuronCore::gather_bytes(const View& v, uint8_t* out) const {
  int64_t esize = dtype_bytes(v.dtype());
  for (int64_t p = 0; p < v.partitions(); ++p) {
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
}

void NeuronCore::scatter_bytes(const View& v, const uint8_t* in) {
  int64_t esize = dtype_bytes(v.dtype());
  for (int64_t p = 0; p < v.partitions(); ++p) {
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
}

std::vector<float> NeuronCore::read(const View& view) const {
  check_view("host read", "view", view, false);
  std::vector<float> out(static_cast<size_t>(view.elements()));
  load(view, out.data());
  return out;
}

void NeuronCore::write(const View& view, std::span<const float> values) {
  check_view("host write", "view", view, true);
  require(static_cast<int64_t>(values.size()) == view.elements(),
          "host write to '{}' {}: got {} values, the view holds {}", allocation_name(view),
          view.describe(), values.size(), view.elements());
  store(view, values.data());
}

std::vector<float> NeuronCore::load_operand(const Operand& s, int64_t partitions) const {
  std::vector<float> out(static_cast<size_t>(partitions), s.value());
  if (s.is_view()) load(s.view(), out.data());  // checked by the instruction: [partitions, 1]
  return out;
}

}  // namespace switchyard::neuron
