#include "backend/host_fallback.h"

#include <algorithm>
#include <cstring>

#include "backend/cpu/cpu_backend.h"
#include "core/error.h"

namespace switchyard::backend {
namespace {

// Bytes from the first element of `t` to the end of its last.
size_t extent_bytes(const Tensor& t) {
  if (t.dtype == DType::kMXFP4) return t.bytes();
  int64_t last = 0;
  for (int d = 0; d < t.rank; ++d) last += (t.shape[d] - 1) * t.strides[d];
  return static_cast<size_t>(last + 1) * static_cast<size_t>(dtype_bytes(t.dtype));
}

// Staging buffers a thread keeps for reuse, in bytes (enough for a GPT-2 124M step's largest
// staged activations at B8 x T1024; more is freed rather than held for the life of the thread).
constexpr size_t kPooledBytes = size_t{256} << 20;

struct StagingPool {
  std::vector<std::pair<size_t, std::unique_ptr<uint8_t[]>>> free;
  size_t bytes = 0;
};

StagingPool& staging_pool() {
  thread_local StagingPool pool;
  return pool;
}

}  // namespace

StagingBuffer::StagingBuffer(size_t bytes) : bytes_(bytes) {
  // The smallest free buffer that holds `bytes` without wasting more than half of itself.
  StagingPool& pool = staging_pool();
  auto best = pool.free.end();
  for (auto it = pool.free.begin(); it != pool.free.end(); ++it) {
    const bool fits = it->first >= bytes && it->first <= 2 * bytes;
    if (fits && (best == pool.free.end() || it->first < best->first)) best = it;
  }
  if (best == pool.free.end()) {
    data_.reset(new uint8_t[std::max<size_t>(bytes, 1)]);
    return;
  }
  bytes_ = best->first;
  data_ = std::move(best->second);
  pool.bytes -= bytes_;
  pool.free.erase(best);
}

StagingBuffer& StagingBuffer::operator=(StagingBuffer&& other) {
  release();
  data_ = std::move(other.data_);
  bytes_ = other.bytes_;
  return *this;
}

StagingBuffer::~StagingBuffer() { release(); }

void StagingBuffer::release() {
  if (!data_) return;
  StagingPool& pool = staging_pool();
  if (pool.bytes + bytes_ <= kPooledBytes) {
    pool.free.emplace_back(bytes_, std::move(data_));
    pool.bytes += bytes_;
  }
  data_.reset();
}

Backend& host_reference_backend() {
  static cpu::CpuBackend reference;
  return reference;
}

void HostStaging::add(const Tensor& t, ops::Access access) {
  if (t.empty() || t.numel() == 0) return;
  auto add_range = [&](const void* data, size_t bytes, DType dtype, bool written) {
    Range r;
    r.begin = reinterpret_cast<uintptr_t>(data);
    r.end = r.begin + bytes;
    r.dtype = dtype;
    r.written = written;
    // Merge with every range it overlaps; ranges stay disjoint.
    for (size_t i = 0; i < ranges_.size();) {
      Range& other = ranges_[i];
      if (other.end <= r.begin || r.end <= other.begin) {
        ++i;
        continue;
      }
      require(other.dtype == r.dtype,
              "host fallback: overlapping operands of different dtypes ({} and {})",
              dtype_name(other.dtype), dtype_name(r.dtype));
      r.begin = std::min(r.begin, other.begin);
      r.end = std::max(r.end, other.end);
      r.written = r.written || other.written;
      ranges_.erase(ranges_.begin() + static_cast<std::ptrdiff_t>(i));
    }
    ranges_.push_back(std::move(r));
  };
  const bool written = access != ops::Access::kRead;
  const DType memory = t.dtype == DType::kMXFP4 ? DType::kU8 : t.dtype;
  add_range(t.data, extent_bytes(t), memory, written);
  if (t.scales) add_range(t.scales, static_cast<size_t>(t.numel() / 32), DType::kU8, false);
}

void HostStaging::load() {
  const bool host_memory = device_.device_memory_is_host_memory();
  for (Range& r : ranges_) {
    const size_t bytes = r.end - r.begin;
    const void* device = reinterpret_cast<const void*>(r.begin);
    if (!widens(r.dtype)) {
      r.in_place = host_memory;
      if (r.in_place) continue;
      r.host = StagingBuffer(bytes);
      device_.copy_to_host(r.host.get(), device, bytes);
      continue;
    }
    const size_t count = bytes / 2;
    std::unique_ptr<uint16_t[]> copy;
    const uint16_t* raw = static_cast<const uint16_t*>(device);
    if (!host_memory) {
      copy.reset(new uint16_t[count]);
      device_.copy_to_host(copy.get(), device, bytes);
      raw = copy.get();
    }
    r.host = StagingBuffer(count * sizeof(float));
    float* out = reinterpret_cast<float*>(r.host.get());
    if (r.dtype == DType::kBF16) {
      bf16_to_float(raw, out, count);
    } else {
      for (size_t i = 0; i < count; ++i) out[i] = fp16_to_float(raw[i]);
    }
  }
}

const HostStaging::Range& HostStaging::range_of(uintptr_t address) const {
  for (const Range& r : ranges_) {
    if (address >= r.begin && address < r.end) return r;
  }
  fail("host fallback: an operand at {:#x} was not staged", address);
}

Tensor HostStaging::host_view(const Tensor& t) const {
  if (t.empty() || t.numel() == 0) return t;
  Tensor host = t;
  const uintptr_t address = reinterpret_cast<uintptr_t>(t.data);
  const Range& r = range_of(address);
  const size_t offset = address - r.begin;
  if (widens(r.dtype)) {
    host.data = r.host.get() + offset / 2 * sizeof(float);
    host.dtype = DType::kF32;
  } else if (!r.in_place) {
    host.data = r.host.get() + offset;
  }
  if (t.scales) {
    const uintptr_t scales = reinterpret_cast<uintptr_t>(t.scales);
    const Range& s = range_of(scales);
    if (!s.in_place) host.scales = s.host.get() + (scales - s.begin);
  }
  return host;
}

void HostStaging::store() {
  const bool host_memory = device_.device_memory_is_host_memory();
  for (const Range& r : ranges_) {
    if (!r.written || r.in_place) continue;
    const size_t bytes = r.end - r.begin;
    void* device = reinterpret_cast<void*>(r.begin);
    if (!widens(r.dtype)) {
      device_.copy_to_device(device, r.host.get(), bytes);
      continue;
    }
    const size_t count = bytes / 2;
    std::unique_ptr<uint16_t[]> copy;
    uint16_t* raw = static_cast<uint16_t*>(device);
    if (!host_memory) {
      copy.reset(new uint16_t[count]);
      raw = copy.get();
    }
    const float* in = reinterpret_cast<const float*>(r.host.get());
    if (r.dtype == DType::kBF16) {
      float_to_bf16(in, raw, count);
    } else {
      for (size_t i = 0; i < count; ++i) raw[i] = float_to_fp16(in[i]);
    }
    if (!host_memory) device_.copy_to_device(device, raw, bytes);
  }
}

}  // namespace switchyard::backend
