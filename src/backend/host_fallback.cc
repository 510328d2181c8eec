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

}  // namespace

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
  for (Range& r : ranges_) {
    const size_t bytes = r.end - r.begin;
    std::vector<uint8_t> raw(bytes);
    device_.copy_to_host(raw.data(), reinterpret_cast<const void*>(r.begin), bytes);
    if (!widens(r.dtype)) {
      r.host = std::move(raw);
      continue;
    }
    const size_t count = bytes / 2;
    r.host.resize(count * sizeof(float));
    float* out = reinterpret_cast<float*>(r.host.data());
    for (size_t i = 0; i < count; ++i) {
      uint16_t bits;
      std::memcpy(&bits, raw.data() + 2 * i, 2);
      out[i] = r.dtype == DType::kBF16 ? bf16_to_float(bits) : fp16_to_float(bits);
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
    host.data = const_cast<uint8_t*>(r.host.data()) + offset / 2 * sizeof(float);
    host.dtype = DType::kF32;
  } else {
    host.data = const_cast<uint8_t*>(r.host.data()) + offset;
  }
  if (t.scales) {
    const uintptr_t scales = reinterpret_cast<uintptr_t>(t.scales);
    const Range& s = range_of(scales);
    host.scales = s.host.data() + (scales - s.begin);
  }
  return host;
}

void HostStaging::store() {
  for (const Range& r : ranges_) {
    if (!r.written) continue;
    const size_t bytes = r.end - r.begin;
    if (!widens(r.dtype)) {
      device_.copy_to_device(reinterpret_cast<void*>(r.begin), r.host.data(), bytes);
      continue;
    }
    std::vector<uint8_t> raw(bytes);
    const float* in = reinterpret_cast<const float*>(r.host.data());
    for (size_t i = 0; i < bytes / 2; ++i) {
      const uint16_t bits = r.dtype == DType::kBF16 ? float_to_bf16(in[i]) : float_to_fp16(in[i]);
      std::memcpy(raw.data() + 2 * i, &bits, 2);
    }
    device_.copy_to_device(reinterpret_cast<void*>(r.begin), raw.data(), bytes);
  }
}

}  // namespace switchyard::backend
