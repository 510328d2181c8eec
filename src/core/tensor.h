// A typed tensor reference: pointer, dtype, shape and strides. It owns nothing; whoever allocated
// the memory (a backend, a memory map, a host vector) keeps it alive while the reference is used.
//
// Strides count elements, row-major by default; a view may skip columns (q, k and v as views of one
// packed projection) or rows. Block-scaled formats (MXFP4) are contiguous along the last
// dimension in whole blocks: 32 elements are 16 bytes of codes, and `scales` points to one E8M0
// byte per block, laid out as the shape with the last dimension divided by 32.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <type_traits>

#include "core/dtype.h"

namespace switchyard {

inline constexpr int kMaxTensorDims = 5;

struct Tensor {
  void* data = nullptr;
  DType dtype = DType::kF32;
  int rank = 0;
  std::array<int64_t, kMaxTensorDims> shape{};
  std::array<int64_t, kMaxTensorDims> strides{};  // in elements
  const uint8_t* scales = nullptr;                 // MXFP4 only: one E8M0 byte per 32 elements

  // A dense row-major tensor over `data`. Throws Error for more than kMaxTensorDims dimensions or
  // a negative size.
  static Tensor dense(void* data, DType dtype, std::initializer_list<int64_t> shape);
  static Tensor dense(const void* data, DType dtype, std::initializer_list<int64_t> shape) {
    return dense(const_cast<void*>(data), dtype, shape);
  }
  // MXFP4 codes and their scales, dense, with the last dimension a multiple of 32.
  static Tensor mxfp4(const void* codes, const uint8_t* scales, std::initializer_list<int64_t> shape);

  bool empty() const { return data == nullptr; }
  explicit operator bool() const { return data != nullptr; }
  int64_t numel() const;
  // Size of dimension d; negative d counts from the last (-1 is the last dimension).
  int64_t size(int d) const;
  int64_t stride(int d) const;
  // Elements of one row: the product of all sizes but the first (rank 1: 1).
  int64_t row_elements() const;
  // Rows: the first dimension (rank 0: 1).
  int64_t rows() const { return rank == 0 ? 1 : shape[0]; }
  bool is_contiguous() const;
  // Bytes of a contiguous tensor's elements (MXFP4: the codes, not the scales).
  size_t bytes() const { return storage_bytes(dtype, numel()); }

  // The same contiguous memory as another shape with the same element count.
  Tensor reshape(std::initializer_list<int64_t> new_shape) const;
  // Elements [start, start + length) of dimension `dim`.
  Tensor slice(int dim, int64_t start, int64_t length) const;
  // The elements as T, after checking that T matches the dtype (float: fp32, int32_t: int32, ...).
  template <typename T>
  T* as() const;

  // "bf16[4, 64, 768]" (with strides when not contiguous).
  std::string describe() const;
};

// Throws Error naming `what` unless t has the dtype and shape given (-1 in `shape` matches any
// size).
void require_tensor(const Tensor& t, DType dtype, std::initializer_list<int64_t> shape,
                    const char* what);

namespace detail {
template <typename T>
constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::kF32; }
template <> constexpr DType dtype_of<uint16_t>() { return DType::kBF16; }  // raw bf16 or fp16 bits
template <> constexpr DType dtype_of<int32_t>() { return DType::kI32; }
template <> constexpr DType dtype_of<int64_t>() { return DType::kI64; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::kU8; }
template <> constexpr DType dtype_of<double>() { return DType::kF64; }
[[noreturn]] void throw_wrong_type(const Tensor& t, const char* wanted);
}  // namespace detail

template <typename T>
T* Tensor::as() const {
  using U = std::remove_const_t<T>;
  if constexpr (std::is_same_v<U, uint16_t>) {
    if (dtype != DType::kBF16 && dtype != DType::kF16 && dtype != DType::kU16) {
      detail::throw_wrong_type(*this, "16-bit");
    }
  } else if (dtype != detail::dtype_of<U>()) {
    detail::throw_wrong_type(*this, dtype_name(detail::dtype_of<U>()));
  }
  return static_cast<T*>(data);
}

}  // namespace switchyard
