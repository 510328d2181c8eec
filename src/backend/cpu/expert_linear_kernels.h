// Every expert's linear layer over its own rows (ops.h ExpertLinear, ExpertLinearBackward), as
// function templates over the scalar type in the style of cpu_kernels.h. The rows are in grouped
// order: expert e's are [offsets[e], offsets[e + 1]), and its weight[e] is [OC, C].
//
// Each expert's product is one of the dense products linear layers use, so an expert streams its
// weights once per call:
// - batch_invariant, or at most kGemvMaxRows rows: matmul_forward's batch-invariant path (weights
//   streamed once for few rows, the packed GEMM for many), then the bias added on its own, exactly
//   as ops::Linear with batch_invariant computes a row: an expert's row gets the same bits as a
//   Linear over that row, however many rows share the expert;
// - otherwise oneDNN's sgemm. Not linear_forward's matmul primitives: those are built (JIT code)
//   and cached per number of rows, and an expert's row count changes every step.
// Large experts run one after another, each product using every thread (decoding streams one
// expert's weights with all cores); experts too small to split run side by side, one per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "backend/cpu/cpu_kernels.h"

namespace switchyard::backend::cpu {

// Expert products with at most this many weights run one per thread, several experts at once;
// larger ones one at a time with every thread.
inline constexpr size_t kSmallExpertWeights = kParallelThreshold;

// out[rows,OC] = inp[rows,C] @ weight[OC,C]^T + bias[OC] (bias may be null) for one expert.
template <typename T>
void expert_product(T* out, const T* inp, const T* weight, const T* bias, int rows, int C, int OC,
                    bool batch_invariant) {
  if (batch_invariant || rows <= kGemvMaxRows) {
    matmul_forward(out, inp, weight, bias, rows, C, OC, /*batch_invariant=*/true);
    return;
  }
  gemm<T>(false, true, rows, OC, C, T(1), inp, C, weight, C, T(0), out, OC);
  if (bias == nullptr) return;
  for (int n = 0; n < rows; ++n) {
    T* o = out + static_cast<size_t>(n) * OC;
    SWITCHYARD_OMP(omp simd)
    for (int oc = 0; oc < OC; ++oc) o[oc] += bias[oc];
  }
}

// Runs fn(e, first_row, rows) for every expert with rows: one after another when an expert's
// product is large enough to use every thread itself, otherwise several experts at once (their
// products then run on one thread each, inside this parallel loop).
template <typename Fn>
void for_each_expert(const int32_t* offsets, int E, int C, int OC, Fn&& fn) {
  const bool small = static_cast<size_t>(OC) * C <= kSmallExpertWeights;
  const size_t work = static_cast<size_t>(offsets[E]) * OC * C;
  if (small && work > kParallelThreshold) {
    SWITCHYARD_OMP_FOR(schedule(dynamic, 1))
    for (int e = 0; e < E; ++e) {
      const int rows = offsets[e + 1] - offsets[e];
      if (rows > 0) fn(e, offsets[e], rows);
    }
    return;
  }
  // Not inside a parallel region, not even an inactive one (`if (false)`): the products' own
  // parallel loops would then be nested teams, which libgomp starts afresh (new threads) each time
  // instead of waking its pool, costing about a millisecond per product on a VM.
  for (int e = 0; e < E; ++e) {
    const int rows = offsets[e + 1] - offsets[e];
    if (rows > 0) fn(e, offsets[e], rows);
  }
}

// out[A,OC] rows of expert e = inp rows of expert e @ weight[e]^T + bias[e] (bias [E,OC] may be
// null). Rows of an expert without rows are not in [0, A), so nothing is written for it.
template <typename T>
void expert_linear_forward(T* out, const T* inp, const T* weight, const T* bias,
                           const int32_t* offsets, int E, int C, int OC, bool batch_invariant) {
  for_each_expert(offsets, E, C, OC, [&](int e, int first, int rows) {
    expert_product(out + static_cast<size_t>(first) * OC, inp + static_cast<size_t>(first) * C,
                   weight + static_cast<size_t>(e) * OC * C,
                   bias ? bias + static_cast<size_t>(e) * OC : nullptr, rows, C, OC,
                   batch_invariant);
  });
}

// expert_linear_forward over weights [E, OC, C] stored as fp32, bf16 or MXFP4 (WeightMatrix):
// always the batch-invariant product (matmul_forward's WeightMatrix overload), so an expert's row
// gets the bits of ops::Linear over that row and that expert's weights.
void expert_linear_forward(float* out, const float* inp, const WeightMatrix& weight,
                           const float* bias, const int32_t* offsets, int E, int C, int OC);

// Per expert e over its rows: dinp += dout @ weight[e] (skipped when dinp is null); dweight[e] +=
// dout^T @ inp; dbias[e] += column sums of dout (skipped when dbias is null). An expert without
// rows gets no gradient.
template <typename T>
void expert_linear_backward(T* dinp, T* dweight, T* dbias, const T* dout, const T* inp,
                            const T* weight, const int32_t* offsets, int E, int C, int OC) {
  for_each_expert(offsets, E, C, OC, [&](int e, int first, int rows) {
    matmul_backward(dinp ? dinp + static_cast<size_t>(first) * C : nullptr,
                    dweight + static_cast<size_t>(e) * OC * C,
                    dbias ? dbias + static_cast<size_t>(e) * OC : nullptr,
                    dout + static_cast<size_t>(first) * OC, inp + static_cast<size_t>(first) * C,
                    weight + static_cast<size_t>(e) * OC * C, rows, C, OC);
  });
}

// Instantiated for float and double in expert_linear_kernels.cc only (see cpu_kernels.h's note).
#define SWITCHYARD_CPU_EXPERT_LINEAR_INSTANCES(PREFIX, T)                                         \
  PREFIX template void expert_product<T>(T*, const T*, const T*, const T*, int, int, int, bool);  \
  PREFIX template void expert_linear_forward<T>(T*, const T*, const T*, const T*, const int32_t*, \
                                                int, int, int, bool);                             \
  PREFIX template void expert_linear_backward<T>(T*, T*, T*, const T*, const T*, const T*,        \
                                                 const int32_t*, int, int, int);

SWITCHYARD_CPU_EXPERT_LINEAR_INSTANCES(extern, float)
SWITCHYARD_CPU_EXPERT_LINEAR_INSTANCES(extern, double)

}  // namespace switchyard::backend::cpu
