// Executor: moving values between the memories and fp32 working rows (loads with conversion,
// rounding stores, bit-exact byte copies), and the working buffers instructions share.
#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "neuron/executor.h"
#include "neuron/parallel.h"

namespace switchyard::neuron {

namespace {

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
    case DType::kU8:
      return load_run<DType::kU8>;
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
    case DType::kU8:
      return store_run<DType::kU8>;
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

// Whether writes to different partitions of the view can never touch the same bytes (always true
// in SBUF/PSUM; for HBM rows, when a row's extent fits within the row stride).
bool partitions_disjoint(const View& v) {
  if (v.memory() != Memory::kHbm || v.partitions() == 1) return true;
  int64_t last = 0;
  for (int d = 0; d < v.free_dims(); ++d) last += (v.free_dim(d).size - 1) * v.free_dim(d).stride;
  return v.partition_stride() > last;
}

}  // namespace

Executor::Executor(Memories& memories, const Rules& rules) : memories_(memories), rules_(rules) {}

void Executor::load_partition(const View& v, int64_t p, float* out) const {
  LoadRun run = load_run_for(v.dtype());
  const int64_t esize = dtype_bytes(v.dtype());
  const uint8_t* base = element_base(v, p);
  for_each_run(v, [&](int64_t offset, int64_t n, int64_t stride) {
    run(base + offset * esize, n, stride * esize, out);
    out += n;
  });
}

void Executor::store_partition(const View& v, int64_t p, const float* values) {
  StoreRun run = store_run_for(v.dtype());
  const int64_t esize = dtype_bytes(v.dtype());
  uint8_t* base = element_base(v, p);
  for_each_run(v, [&](int64_t offset, int64_t n, int64_t stride) {
    run(base + offset * esize, n, stride * esize, values);
    values += n;
  });
}

void Executor::load(const View& v, float* out) const {
  const int64_t per_partition = v.free_size();
  for_each_partition(v.partitions(), v.elements(),
                     [&](int64_t p) { load_partition(v, p, out + p * per_partition); });
}

void Executor::store(const View& v, const float* values) {
  const int64_t per_partition = v.free_size();
  // Rows that share bytes are written in order, by one thread.
  const int64_t threaded_elements = partitions_disjoint(v) ? v.elements() : 0;
  for_each_partition(v.partitions(), threaded_elements,
                     [&](int64_t p) { store_partition(v, p, values + p * per_partition); });
}

bool Executor::rowwise_safe(const View& out, std::initializer_list<const View*> inputs) {
  for (const View* in : inputs) {
    if (in->memory() != out.memory() || in->partition_start() == out.partition_start()) continue;
    const bool disjoint = in->partition_start() + in->partitions() <= out.partition_start() ||
                          out.partition_start() + out.partitions() <= in->partition_start();
    if (!disjoint) return false;
  }
  return true;
}

void Executor::gather_partition_bytes(const View& v, int64_t p, uint8_t* out) const {
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

void Executor::scatter_partition_bytes(const View& v, int64_t p, const uint8_t* in) {
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

void Executor::gather_bytes(const View& v, uint8_t* out) const {
  const int64_t row_bytes = v.free_size() * dtype_bytes(v.dtype());
  for (int64_t p = 0; p < v.partitions(); ++p) gather_partition_bytes(v, p, out + p * row_bytes);
}

void Executor::scatter_bytes(const View& v, const uint8_t* in) {
  const int64_t row_bytes = v.free_size() * dtype_bytes(v.dtype());
  for (int64_t p = 0; p < v.partitions(); ++p) scatter_partition_bytes(v, p, in + p * row_bytes);
}

bool Executor::copy_by_partition(const View& dst, const View& src) {
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

std::span<float> Executor::scratch(int index, int64_t n) const {
  std::vector<float>& buffer = scratch_[static_cast<size_t>(index)];
  if (buffer.size() < static_cast<size_t>(n)) buffer.resize(static_cast<size_t>(n));
  return {buffer.data(), static_cast<size_t>(n)};
}

std::span<float> Executor::load_operand(const Operand& s, int64_t partitions,
                                          int scratch_index) const {
  std::span<float> out = scratch(scratch_index, partitions);
  if (s.is_view()) {
    load(s.view(), out.data());  // checked by the instruction: [partitions, 1]
  } else {
    std::fill(out.begin(), out.end(), s.value());
  }
  return out;
}

int32_t Executor::index_at(const View& indices, int64_t p) const {
  int32_t index;
  std::memcpy(&index, element_base(indices, p), 4);
  return index;
}

}  // namespace switchyard::neuron
