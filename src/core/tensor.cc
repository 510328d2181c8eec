#include "core/tensor.h"

#include <fmt/format.h>

#include "core/error.h"

namespace switchyard {
namespace {

void set_dense_strides(Tensor& t) {
  int64_t stride = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.strides[d] = stride;
    stride *= t.shape[d];
  }
}

std::string join(const std::array<int64_t, kMaxTensorDims>& values, int rank) {
  std::string s;
  for (int d = 0; d < rank; ++d) s += (d ? ", " : "") + std::to_string(values[d]);
  return s;
}

int resolve_dim(const Tensor& t, int d) {
  const int resolved = d < 0 ? d + t.rank : d;
  require(resolved >= 0 && resolved < t.rank, "dimension {} of a {}-dimensional tensor {}", d,
          t.rank, t.describe());
  return resolved;
}

}  // namespace

Tensor Tensor::dense(void* data, DType dtype, std::initializer_list<int64_t> shape) {
  require(shape.size() <= kMaxTensorDims, "a tensor has at most {} dimensions, got {}",
          kMaxTensorDims, shape.size());
  Tensor t;
  t.data = data;
  t.dtype = dtype;
  t.rank = static_cast<int>(shape.size());
  int d = 0;
  for (int64_t size : shape) {
    require(size >= 0, "tensor dimension {} has negative size {}", d, size);
    t.shape[d++] = size;
  }
  set_dense_strides(t);
  return t;
}

Tensor Tensor::mxfp4(const void* codes, const uint8_t* scales,
                     std::initializer_list<int64_t> shape) {
  Tensor t = dense(codes, DType::kMXFP4, shape);
  require(t.rank >= 1 && t.shape[t.rank - 1] % dtype_block_elements(DType::kMXFP4) == 0,
          "an MXFP4 tensor's last dimension must be a multiple of 32, got {}", t.describe());
  t.scales = scales;
  return t;
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int d = 0; d < rank; ++d) n *= shape[d];
  return n;
}

int64_t Tensor::size(int d) const { return shape[resolve_dim(*this, d)]; }
int64_t Tensor::stride(int d) const { return strides[resolve_dim(*this, d)]; }

int64_t Tensor::row_elements() const {
  int64_t n = 1;
  for (int d = 1; d < rank; ++d) n *= shape[d];
  return n;
}

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  for (int d = rank - 1; d >= 0; --d) {
    if (shape[d] != 1 && strides[d] != expected) return false;
    expected *= shape[d];
  }
  return true;
}

Tensor Tensor::reshape(std::initializer_list<int64_t> new_shape) const {
  require(is_contiguous(), "cannot reshape the non-contiguous tensor {}", describe());
  Tensor t = dense(data, dtype, new_shape);
  t.scales = scales;
  require(t.numel() == numel(), "cannot reshape {} ({} elements) to [{}] ({} elements)", describe(),
          numel(), join(t.shape, t.rank), t.numel());
  return t;
}

Tensor Tensor::slice(int dim, int64_t start, int64_t length) const {
  const int d = resolve_dim(*this, dim);
  require(start >= 0 && length >= 0 && start + length <= shape[d],
          "slice [{}, {}) of dimension {} of {} is out of range", start, start + length, d,
          describe());
  require(dtype != DType::kMXFP4, "slices of MXFP4 tensors are not supported ({})", describe());
  Tensor t = *this;
  t.shape[d] = length;
  if (data) t.data = static_cast<char*>(data) + start * strides[d] * dtype_bytes(dtype);
  return t;
}

std::string Tensor::describe() const {
  std::string s = fmt::format("{}[{}]", dtype_name(dtype), join(shape, rank));
  if (!is_contiguous()) s += fmt::format(" strides [{}]", join(strides, rank));
  return s;
}

void require_tensor(const Tensor& t, DType dtype, std::initializer_list<int64_t> shape,
                    const char* what) {
  bool ok = t.dtype == dtype && t.rank == static_cast<int>(shape.size());
  int d = 0;
  for (int64_t size : shape) {
    if (ok && size >= 0 && t.shape[d] != size) ok = false;
    ++d;
  }
  if (ok) return;
  std::string expected;
  d = 0;
  for (int64_t size : shape) expected += (d++ ? ", " : "") + (size < 0 ? std::string("*") : std::to_string(size));
  fail("{}: expected {}[{}], got {}", what, dtype_name(dtype), expected, t.describe());
}

namespace detail {
void throw_wrong_type(const Tensor& t, const char* wanted) {
  fail("tensor {} read as {} elements", t.describe(), wanted);
}
}  // namespace detail

}  // namespace switchyard
