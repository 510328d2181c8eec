// The mixture-of-experts kernels other than the expert products (ops.h: TopKRouting, GroupByExpert,
// ClampedSwiglu, ExpertCombine, RouterLoadStats and their backward passes), as function templates
// over the scalar type (float for the backend, double for the finite-difference tests), in the
// style of cpu_kernels.h: raw pointers, rows in parallel, no allocation, no exceptions (CpuBackend
// checks the operands first, expert ids and grouped positions included).
//
// A = N * k assignments; assignment a = n * k + j is row n's j-th choice. Grouped order lists the
// assignments by expert, and within an expert by assignment (ops.h).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "backend/cpu/cpu_kernels.h"

namespace switchyard::backend::cpu {

// ---- routing ----

// For each row of logits[N,E]: expert_ids[n, :k] = the k largest logits' experts, largest first,
// the lower expert first among equal logits; weights[n, :k] = softmax over those k logits. One
// pass over the row keeps the chosen experts sorted in the row's expert_ids (an insertion that
// moves an expert only past strictly smaller logits, so the earlier expert stays first on ties).
// A NaN logit never displaces a chosen one, so the ids stay distinct and in range, and a NaN
// among the chosen makes the row's weights NaN.
template <typename T>
void topk_routing(int32_t* expert_ids, T* weights, const T* logits, int N, int E, int k) {
  const bool parallel = static_cast<size_t>(N) * E * k > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int n = 0; n < N; ++n) {
    const T* l = logits + static_cast<size_t>(n) * E;
    int32_t* ids = expert_ids + static_cast<size_t>(n) * k;
    int chosen = 0;
    for (int e = 0; e < E; ++e) {
      if (chosen == k && !(l[e] > l[ids[k - 1]])) continue;
      int slot = chosen < k ? chosen++ : k - 1;  // a full list drops its last expert
      for (; slot > 0 && l[e] > l[ids[slot - 1]]; --slot) ids[slot] = ids[slot - 1];
      ids[slot] = e;
    }
    T* w = weights + static_cast<size_t>(n) * k;
    const T max_logit = l[ids[0]];
    T sum = 0;
    for (int j = 0; j < k; ++j) {
      w[j] = std::exp(l[ids[j]] - max_logit);
      sum += w[j];
    }
    for (int j = 0; j < k; ++j) w[j] /= sum;
  }
}

// dlogits[n, expert_ids[n, j]] += weights[n, j] * (dweights[n, j] - sum_i weights[n, i] *
// dweights[n, i]): the softmax's backward pass, scattered to the chosen experts.
template <typename T>
void topk_routing_backward(T* dlogits, const T* dweights, const T* weights,
                           const int32_t* expert_ids, int N, int E, int k) {
  const bool parallel = static_cast<size_t>(N) * k > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int n = 0; n < N; ++n) {
    const size_t row = static_cast<size_t>(n) * k;
    T weighted = 0;
    for (int j = 0; j < k; ++j) weighted += weights[row + j] * dweights[row + j];
    T* d = dlogits + static_cast<size_t>(n) * E;
    for (int j = 0; j < k; ++j) {
      d[expert_ids[row + j]] += weights[row + j] * (dweights[row + j] - weighted);
    }
  }
}

// The grouped order of A assignments over E experts (ops.h GroupByExpert): a stable counting
// sort. order[g] = the assignment at grouped position g, rows[g] = order[g] / k, position[a] = the
// grouped position of assignment a, offsets[E + 1] = the first position of each expert and A.
// Sequential: it is O(A) and its result must not depend on threads. moe_kernels.cc.
void group_by_expert(int32_t* order, int32_t* rows, int32_t* position, int32_t* offsets,
                     const int32_t* expert_ids, int A, int k, int E);

// ---- clamped SwiGLU ----

// sigmoid(x) and 1 - sigmoid(x), the latter formed as e * s rather than 1 - s (which cancels).
template <typename T>
inline void sigmoid_pair(T x, T& s, T& one_minus_s) {
  T arg = -x;
  // float's exp_vec caps at exp(88); std::exp needs a cap so that e * s stays finite.
  if constexpr (!std::is_same_v<T, float>) arg = std::min(arg, T(700));
  const T e = exp_vec(arg);
  s = T(1) / (T(1) + e);
  one_minus_s = e * s;
}

// out[A,I] from inp[A,2I] with gate = inp[:, 2i], up = inp[:, 2i + 1] interleaved:
// g = min(gate, limit), u = clamp(up, -limit, limit), out = (u + 1) * g * sigmoid(alpha * g).
// A NaN input gives NaN (the clamps pass it through, and g multiplies the result).
template <typename T>
void clamped_swiglu_forward(T* out, const T* inp, int A, int I, T alpha, T limit) {
  const bool parallel = static_cast<size_t>(A) * I > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int a = 0; a < A; ++a) {
    const T* x = inp + static_cast<size_t>(a) * 2 * I;
    T* o = out + static_cast<size_t>(a) * I;
    SWITCHYARD_OMP(omp simd)
    for (int i = 0; i < I; ++i) {
      const T g = std::min(x[2 * i], limit);
      const T u = std::min(std::max(x[2 * i + 1], -limit), limit);
      T s, one_minus_s;
      sigmoid_pair(alpha * g, s, one_minus_s);
      o[i] = (u + T(1)) * g * s;
    }
  }
}

// dinp[A,2I] += the gradient of clamped_swiglu_forward given dout[A,I]:
// dgate = dout (u + 1) (s + alpha g s (1 - s)) where gate <= limit, dup = dout g s where
// -limit <= up <= limit, zero elsewhere (torch.clamp's rule: the bounds pass the gradient).
template <typename T>
void clamped_swiglu_backward(T* dinp, const T* inp, const T* dout, int A, int I, T alpha,
                             T limit) {
  const bool parallel = static_cast<size_t>(A) * I > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int a = 0; a < A; ++a) {
    const T* x = inp + static_cast<size_t>(a) * 2 * I;
    const T* d = dout + static_cast<size_t>(a) * I;
    T* dx = dinp + static_cast<size_t>(a) * 2 * I;
    SWITCHYARD_OMP(omp simd)
    for (int i = 0; i < I; ++i) {
      const T gate = x[2 * i], up = x[2 * i + 1];
      const T g = std::min(gate, limit);
      const T u = std::min(std::max(up, -limit), limit);
      T s, one_minus_s;
      sigmoid_pair(alpha * g, s, one_minus_s);
      const T dgate = d[i] * (u + T(1)) * (s + alpha * g * s * one_minus_s);
      const T dup = d[i] * g * s;
      dx[2 * i] += gate <= limit ? dgate : T(0);
      dx[2 * i + 1] += (up >= -limit && up <= limit) ? dup : T(0);
    }
  }
}

// ---- combining the experts' outputs ----

// out[n,:C] = sum over j = 0..k-1 of weights[n, j] * expert_out[position[n * k + j], :], summed in
// that order, so a row's result depends on its own choices only.
template <typename T>
void expert_combine_forward(T* out, const T* expert_out, const T* weights,
                            const int32_t* position, int N, int C, int k) {
  const bool parallel = static_cast<size_t>(N) * C * k > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int n = 0; n < N; ++n) {
    T* o = out + static_cast<size_t>(n) * C;
    for (int j = 0; j < k; ++j) {
      const size_t a = static_cast<size_t>(n) * k + j;
      const T w = weights[a];
      const T* x = expert_out + static_cast<size_t>(position[a]) * C;
      if (j == 0) {
        SWITCHYARD_OMP(omp simd)
        for (int c = 0; c < C; ++c) o[c] = w * x[c];
      } else {
        SWITCHYARD_OMP(omp simd)
        for (int c = 0; c < C; ++c) o[c] += w * x[c];
      }
    }
  }
}

// dexpert_out[position[a], :] += weights[a] * dout[n, :]; dweights[a] += dout[n, :] .
// expert_out[position[a], :], for a = n * k + j. Rows in parallel: position is a permutation
// (checked), so no two rows write the same grouped row.
template <typename T>
void expert_combine_backward(T* dexpert_out, T* dweights, const T* dout, const T* expert_out,
                             const T* weights, const int32_t* position, int N, int C, int k) {
  const bool parallel = static_cast<size_t>(N) * C * k > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int n = 0; n < N; ++n) {
    const T* d = dout + static_cast<size_t>(n) * C;
    for (int j = 0; j < k; ++j) {
      const size_t a = static_cast<size_t>(n) * k + j;
      const size_t g = static_cast<size_t>(position[a]) * C;
      dweights[a] += dot(d, expert_out + g, C);
      const T w = weights[a];
      T* dx = dexpert_out + g;
      SWITCHYARD_OMP(omp simd)
      for (int c = 0; c < C; ++c) dx[c] += w * d[c];
    }
  }
}

// ---- the router's load-balancing statistics ----

// totals[0, e] += the number of the N * k assignments to expert e; totals[1, e] += the sum over
// rows of softmax(logits[n, :E])[e]. Each row's softmax is formed in T (float: the vectorised
// exp); the totals are summed in double, row after row, so they do not depend on the thread
// count.
template <typename T>
void router_load_stats(double* totals, const T* logits, const int32_t* expert_ids, int N, int E,
                       int k) {
  double* counts = totals;
  double* probabilities = totals + E;
  const size_t A = static_cast<size_t>(N) * k;
  for (size_t a = 0; a < A; ++a) counts[expert_ids[a]] += 1.0;
  for (int n = 0; n < N; ++n) {
    const T* l = logits + static_cast<size_t>(n) * E;
    const auto [max_logit, sum, poison] = softmax_row(l, E);
    const T inv = T(1) / sum + poison;
    SWITCHYARD_OMP(omp simd)
    for (int e = 0; e < E; ++e) {
      probabilities[e] += static_cast<double>(exp_vec(l[e] - max_logit) * inv);
    }
  }
}

// dlogits[n, :E] += the gradient of scale * sum_e counts[e] * p[e], p = softmax(logits[n]),
// counts = totals[0, :E] (held fixed): scale * p[i] * (counts[i] - sum_e counts[e] * p[e]).
template <typename T>
void router_load_backward(T* dlogits, const T* logits, const double* totals, T scale, int N,
                          int E) {
  const double* counts = totals;
  const bool parallel = static_cast<size_t>(N) * E > kParallelThreshold;
  SWITCHYARD_OMP_FOR(schedule(static) if (parallel))
  for (int n = 0; n < N; ++n) {
    const T* l = logits + static_cast<size_t>(n) * E;
    const auto [max_logit, sum, poison] = softmax_row(l, E);
    const T inv = T(1) / sum + poison;
    T expected = 0;  // sum_e counts[e] * p[e]
    SWITCHYARD_OMP(omp simd reduction(+ : expected))
    for (int e = 0; e < E; ++e) {
      expected += static_cast<T>(counts[e]) * exp_vec(l[e] - max_logit) * inv;
    }
    T* d = dlogits + static_cast<size_t>(n) * E;
    SWITCHYARD_OMP(omp simd)
    for (int e = 0; e < E; ++e) {
      const T p = exp_vec(l[e] - max_logit) * inv;
      d[e] += scale * p * (static_cast<T>(counts[e]) - expected);
    }
  }
}

// Instantiated for float and double in moe_kernels.cc only (see cpu_kernels.h's note).
#define SWITCHYARD_CPU_MOE_INSTANCES(PREFIX, T)                                                   \
  PREFIX template void topk_routing<T>(int32_t*, T*, const T*, int, int, int);                    \
  PREFIX template void topk_routing_backward<T>(T*, const T*, const T*, const int32_t*, int, int, \
                                                int);                                             \
  PREFIX template void clamped_swiglu_forward<T>(T*, const T*, int, int, T, T);                   \
  PREFIX template void clamped_swiglu_backward<T>(T*, const T*, const T*, int, int, T, T);        \
  PREFIX template void expert_combine_forward<T>(T*, const T*, const T*, const int32_t*, int,     \
                                                 int, int);                                       \
  PREFIX template void expert_combine_backward<T>(T*, T*, const T*, const T*, const T*,           \
                                                  const int32_t*, int, int, int);                 \
  PREFIX template void router_load_stats<T>(double*, const T*, const int32_t*, int, int, int);    \
  PREFIX template void router_load_backward<T>(T*, const T*, const double*, T, int, int);

SWITCHYARD_CPU_MOE_INSTANCES(extern, float)
SWITCHYARD_CPU_MOE_INSTANCES(extern, double)

}  // namespace switchyard::backend::cpu
