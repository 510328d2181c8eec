// Operand checks shared by CudaBackend's ops (cuda_ops.cc, cuda_attention_ops.cc): each names
// the op and the operand in the Error it throws, as the CPU backend's checks do.
#pragma once

#include <climits>
#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/tensor.h"

namespace switchyard::backend::cuda {

// ---- operand checks: each names the op and the operand ----

struct Operands {
  const char* op;
  DType activations;  // the device's activation dtype

  void present(const Tensor& t, const char* what) const {
    require(!t.empty(), "cuda {}: {} is missing", op, what);
  }
  void dtype(const Tensor& t, DType want, const char* what) const {
    present(t, what);
    require(t.dtype == want, "cuda {}: {} must be {}, got {}", op, what, dtype_name(want),
            t.describe());
  }
  void dense(const Tensor& t, const char* what) const {
    require(t.is_contiguous(), "cuda {}: {} must be dense, got {}", op, what, t.describe());
  }
  // An activation of the device's dtype, possibly a strided view.
  void act_view(const Tensor& t, const char* what) const {
    present(t, what);
    require(t.dtype == activations,
            "cuda {}: {} must be {}, the device's activation dtype (Backend::precision()), got {}",
            op, what, dtype_name(activations), t.describe());
  }
  // A dense activation.
  void* act(const Tensor& t, const char* what) const {
    act_view(t, what);
    dense(t, what);
    return t.data;
  }
  template <typename T>
  T* typed(const Tensor& t, DType want, const char* what) const {
    dtype(t, want, what);
    dense(t, what);
    return static_cast<T*>(t.data);
  }
  float* f32(const Tensor& t, const char* what) const { return typed<float>(t, DType::kF32, what); }
  float* optional_f32(const Tensor& t, const char* what) const {
    return t.empty() ? nullptr : f32(t, what);
  }
  const int32_t* i32(const Tensor& t, const char* what) const {
    return typed<const int32_t>(t, DType::kI32, what);
  }
  // An int32 output (ids, positions, offsets a kernel writes).
  int32_t* i32_out(const Tensor& t, const char* what) const {
    return typed<int32_t>(t, DType::kI32, what);
  }
  double* f64(const Tensor& t, const char* what) const {
    return typed<double>(t, DType::kF64, what);
  }
  // [rows, cols], checked against what the other operands imply (-1: not yet known).
  void matrix(const Tensor& t, int64_t rows, int64_t cols, const char* what) const {
    present(t, what);
    require(t.rank == 2 && (rows < 0 || t.shape[0] == rows) && (cols < 0 || t.shape[1] == cols),
            "cuda {}: {} must be [{}, {}], got {}", op, what, rows < 0 ? "*" : std::to_string(rows),
            cols < 0 ? "*" : std::to_string(cols), t.describe());
  }
  void numel(const Tensor& t, int64_t n, const char* what) const {
    present(t, what);
    require(t.numel() == n, "cuda {}: {} must have {} elements, got {}", op, what, n,
            t.describe());
  }
  int to_int(int64_t n, const char* what) const {
    require(n >= 0 && n <= INT_MAX, "cuda {}: {} has {} elements along a dimension, more than {}",
            op, what, n, INT_MAX);
    return static_cast<int>(n);
  }
};

// Bytes from a tensor's first element to the end of its last.
inline size_t extent_bytes(const Tensor& t) {
  int64_t last = 0;
  for (int d = 0; d < t.rank; ++d) last += (t.shape[d] - 1) * t.strides[d];
  return static_cast<size_t>(last + 1) * static_cast<size_t>(dtype_bytes(t.dtype));
}

inline bool overlaps(const Tensor& a, const Tensor& b) {
  if (a.empty() || b.empty() || a.numel() == 0 || b.numel() == 0) return false;
  const char* pa = static_cast<const char*>(a.data);
  const char* pb = static_cast<const char*>(b.data);
  return pa < pb + extent_bytes(b) && pb < pa + extent_bytes(a);
}

// Runs its body with Act = bf16 or float, as the backend's precision says (inside CudaBackend's
// members, where bf16_mode() is the backend's).
#define SWITCHYARD_WITH_ACT(...) \
  do {                           \
    if (bf16_mode()) {           \
      using Act = bf16;          \
      __VA_ARGS__;               \
    } else {                     \
      using Act = float;         \
      __VA_ARGS__;               \
    }                            \
  } while (0)

}  // namespace switchyard::backend::cuda
