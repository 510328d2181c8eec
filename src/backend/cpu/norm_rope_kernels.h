// RMSNorm and rotary position embeddings on the CPU (ops.h RmsNorm, RmsNormBackward, Rope), as
// function templates over the scalar type (float for the backend, double for the
// finite-difference tests), in the style of cpu_kernels.h: raw pointers, rows in parallel, no
// allocation, no exceptions (CpuBackend checks the operands first).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "backend/cpu/cpu_kernels.h"

namespace switchyard::backend::cpu {

// ---- RMSNorm ----

// out[N,C] = inp * rstd * weight per row, rstd = 1 / sqrt(mean(inp^2) + epsilon) (no mean
// subtraction, no shift). rstd[N] is saved for the backward pass.
template <typename T>
void rmsnorm_forward(T* out, T* rstd, const T* inp, const T* weight, int N, int C, T epsilon) {
  const bool parallel = static_cast<size_t>(N) * C > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int n = 0; n < N; ++n) {
    const T* x = inp + static_cast<size_t>(n) * C;
    T squares = 0;
    SWITCHYARD_OMP(omp simd reduction(+ : squares))
    for (int c = 0; c < C; ++c) squares += x[c] * x[c];
    const T s = T(1) / std::sqrt(squares / C + epsilon);
    T* o = out + static_cast<size_t>(n) * C;
    SWITCHYARD_OMP(omp simd)
    for (int c = 0; c < C; ++c) o[c] = x[c] * s * weight[c];
    rstd[n] = s;
  }
}

// dinp[N,C] += rstd * (weight * dout - inp * rstd^2 * mean(weight * dout * inp)) per row (the
// second term is the gradient through rstd); dweight[C] += sum over rows of inp * rstd * dout.
// dinp per row in parallel, then dweight with threads splitting the channels.
template <typename T>
void rmsnorm_backward(T* dinp, T* dweight, const T* dout, const T* inp, const T* weight,
                      const T* rstd, int N, int C) {
  const bool parallel = static_cast<size_t>(N) * C > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int n = 0; n < N; ++n) {
    const T* x = inp + static_cast<size_t>(n) * C;
    const T* d = dout + static_cast<size_t>(n) * C;
    const T s = rstd[n];
    T projection = 0;
    SWITCHYARD_OMP(omp simd reduction(+ : projection))
    for (int c = 0; c < C; ++c) projection += weight[c] * d[c] * x[c];
    const T k = s * s * projection / C;
    T* dx = dinp + static_cast<size_t>(n) * C;
    SWITCHYARD_OMP(omp simd)
    for (int c = 0; c < C; ++c) dx[c] += s * (weight[c] * d[c] - x[c] * k);
  }
  constexpr int kBlock = 64;
  const int blocks = (C + kBlock - 1) / kBlock;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int blk = 0; blk < blocks; ++blk) {
    const int c0 = blk * kBlock;
    const int c1 = std::min(C, c0 + kBlock);
    for (int n = 0; n < N; ++n) {
      const T* x = inp + static_cast<size_t>(n) * C;
      const T* d = dout + static_cast<size_t>(n) * C;
      const T s = rstd[n];
      SWITCHYARD_OMP(omp simd)
      for (int c = c0; c < c1; ++c) dweight[c] += x[c] * s * d[c];
    }
  }
}

// ---- rotary position embeddings ----

// Rotates x in place: row n of x is `heads` heads of head_dim values (rows ldx elements apart),
// and in every head the pair (x[i], x[i + head_dim / 2]) becomes (x[i] c - x[i + head_dim / 2] s,
// x[i + head_dim / 2] c + x[i] s) with c = cos[p, i], s = sin[p, i], p = positions[n]; cos and sin
// are [positions, head_dim / 2]. With `transpose`, s is negated: the transposed map, which is the
// backward pass of the forward one (also its inverse when the tables carry no scale). The rest of
// a strided row (v beside q and k) is not touched.
template <typename T>
void rope(T* x, int64_t ldx, const T* cos, const T* sin, const int32_t* positions, int N,
          int heads, int head_dim, bool transpose) {
  const int half = head_dim / 2;
  const T sign = transpose ? T(-1) : T(1);
  const bool parallel = static_cast<size_t>(N) * heads * head_dim > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int n = 0; n < N; ++n) {
    const T* c = cos + static_cast<size_t>(positions[n]) * half;
    const T* s = sin + static_cast<size_t>(positions[n]) * half;
    for (int h = 0; h < heads; ++h) {
      T* lo = x + static_cast<size_t>(n) * ldx + static_cast<size_t>(h) * head_dim;
      T* hi = lo + half;
      SWITCHYARD_OMP(omp simd)
      for (int i = 0; i < half; ++i) {
        const T a = lo[i], b = hi[i], si = sign * s[i];
        lo[i] = a * c[i] - b * si;
        hi[i] = b * c[i] + a * si;
      }
    }
  }
}

// Instantiated for float and double in norm_rope_kernels.cc only (see cpu_kernels.h's note).
#define SWITCHYARD_CPU_NORM_ROPE_INSTANCES(PREFIX, T)                                             \
  PREFIX template void rmsnorm_forward<T>(T*, T*, const T*, const T*, int, int, T);               \
  PREFIX template void rmsnorm_backward<T>(T*, T*, const T*, const T*, const T*, const T*, int,   \
                                           int);                                                  \
  PREFIX template void rope<T>(T*, int64_t, const T*, const T*, const int32_t*, int, int, int,    \
                               bool);

SWITCHYARD_CPU_NORM_ROPE_INSTANCES(extern, float)
SWITCHYARD_CPU_NORM_ROPE_INSTANCES(extern, double)

}  // namespace switchyard::backend::cpu
