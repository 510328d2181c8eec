// Attention on the CPU, as function templates over the scalar type (float for the backend, double
// for the finite-difference tests), in the style of cpu_kernels.h.
//
// Every form shares one masking rule (ops.h AttentionSpec): a query at position p attends to keys
// at positions (p - window, p], all of [0, p] when window is 0; query head h reads key-value head
// h / (heads / kv_heads); with sinks, head h's softmax denominator also holds exp(sinks[h]).
//
//   attention_forward / attention_backward: windows of `seq` tokens for training and evaluation,
//     through small matrix products per (window, head) and block of query rows; the full
//     probabilities are the record the backward pass reads.
//   attention_decode: one new position per sequence over GPT-2's dense per-layer cache.
//   kv_cache_write / paged_attention: the paged cache (ops.h KvCacheWrite, PagedAttention), an
//     online softmax over chunks of cached positions (paged_attention_kernels.h).
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/paged_attention_kernels.h"

namespace switchyard::backend::cpu {

// Where q, k, v and out live for attention over windows: row strides in elements; within a row,
// the heads are contiguous blocks of head_dim.
struct AttentionGeometry {
  int batch = 0, seq = 0;
  int heads = 0, kv_heads = 0, head_dim = 0;
  int window = 0;
  int64_t ldq = 0, ldk = 0, ldv = 0, ldo = 0;
  int group() const { return heads / kv_heads; }
  // The first key position query position t may see.
  int first_key(int t) const { return window > 0 ? std::max(0, t - window + 1) : 0; }
};

// out (rows of ldo) = softmax(scale q k^T, masked) v; att[batch, heads, seq, seq] gets the
// probabilities (zero outside the mask). sinks may be null.
template <typename T>
void attention_forward(T* out, T* att, const T* q, const T* k, const T* v, const float* sinks,
                       const AttentionGeometry& g, T scale) {
  const int S = g.seq, hd = g.head_dim;
  const bool parallel = static_cast<size_t>(g.batch) * S * S * g.heads * hd > kParallelThreshold;
  SWITCHYARD_OMP_FOR(collapse(2) schedule(dynamic, 1) if (parallel))
  for (int b = 0; b < g.batch; ++b) {
    for (int h = 0; h < g.heads; ++h) {
      const int kvh = h / g.group();
      const T* qh = q + static_cast<size_t>(b) * S * g.ldq + static_cast<size_t>(h) * hd;
      const T* kh = k + static_cast<size_t>(b) * S * g.ldk + static_cast<size_t>(kvh) * hd;
      const T* vh = v + static_cast<size_t>(b) * S * g.ldv + static_cast<size_t>(kvh) * hd;
      T* oh = out + static_cast<size_t>(b) * S * g.ldo + static_cast<size_t>(h) * hd;
      T* head_att = att + (static_cast<size_t>(b) * g.heads + h) * S * S;
      const T sink = sinks ? static_cast<T>(sinks[h]) : T(0);
      for (int r0 = 0; r0 < S; r0 += kAttentionBlock) {
        const int r1 = std::min(S, r0 + kAttentionBlock), rows = r1 - r0;
        const int k0 = g.first_key(r0), keys = r1 - k0;
        T* block = head_att + static_cast<size_t>(r0) * S;
        gemm<T>(false, true, rows, keys, hd, scale, qh + static_cast<size_t>(r0) * g.ldq,
                static_cast<int>(g.ldq), kh + static_cast<size_t>(k0) * g.ldk,
                static_cast<int>(g.ldk), 0, block + k0, S);
        for (int t = r0; t < r1; ++t) {
          T* a = head_att + static_cast<size_t>(t) * S;
          const int lo = g.first_key(t);
          T max_score = sinks ? sink : -std::numeric_limits<T>::infinity();
          for (int t2 = lo; t2 <= t; ++t2) max_score = std::max(max_score, a[t2]);
          T sum = sinks ? exp_vec(sink - max_score) : T(0);
          T poison = 0;  // NaN if a score is NaN or infinite: exp_vec would hide it
          SWITCHYARD_OMP(omp simd reduction(+ : sum, poison))
          for (int t2 = lo; t2 <= t; ++t2) {
            const T e = exp_vec(a[t2] - max_score);
            poison += a[t2] * T(0);
            a[t2] = e;
            sum += e;
          }
          const T inv = T(1) / sum + poison;
          SWITCHYARD_OMP(omp simd)
          for (int t2 = lo; t2 <= t; ++t2) a[t2] *= inv;
          for (int t2 = 0; t2 < lo; ++t2) a[t2] = 0;
          for (int t2 = t + 1; t2 < S; ++t2) a[t2] = 0;
        }
        gemm<T>(false, false, rows, hd, keys, 1, block + k0, S,
                vh + static_cast<size_t>(k0) * g.ldv, static_cast<int>(g.ldv), 0,
                oh + static_cast<size_t>(r0) * g.ldo, static_cast<int>(g.ldo));
      }
    }
  }
}

// dq, dk, dv (laid out as q, k, v) += gradients of attention_forward's out given dout (rows of
// ldo); dsinks[heads] += the sinks' gradient when sinks are present. scratch[batch, heads, seq,
// seq] holds d(att) and then d(scores) in place. Per head and block of query rows:
//   d(att) = dout V^T, dV += att^T dout, d(scores) = att * (d(att) - rowsum(att * d(att))) * scale,
//   dQ += d(scores) K, dK += d(scores)^T Q, d(sink) -= p(sink) * rowsum(att * d(att)).
// Threads split (window, key-value head) pairs and run a group's query heads in turn, so each
// owns its columns of dk and dv.
template <typename T>
void attention_backward(T* dq, T* dk, T* dv, float* dsinks, T* scratch, const T* dout,
                        const T* att, const T* q, const T* k, const T* v, const float* sinks,
                        const AttentionGeometry& g, T scale) {
  const int S = g.seq, hd = g.head_dim;
  const bool parallel = static_cast<size_t>(g.batch) * S * S * g.heads * hd > kParallelThreshold;
  SWITCHYARD_OMP_FOR(collapse(2) schedule(dynamic, 1) if (parallel))
  for (int b = 0; b < g.batch; ++b) {
    for (int kvh = 0; kvh < g.kv_heads; ++kvh) {
      const size_t kv_offset = static_cast<size_t>(b) * S * g.ldk + static_cast<size_t>(kvh) * hd;
      const size_t v_offset = static_cast<size_t>(b) * S * g.ldv + static_cast<size_t>(kvh) * hd;
      for (int h = kvh * g.group(); h < (kvh + 1) * g.group(); ++h) {
        const size_t q_offset = static_cast<size_t>(b) * S * g.ldq + static_cast<size_t>(h) * hd;
        const T* d = dout + static_cast<size_t>(b) * S * g.ldo + static_cast<size_t>(h) * hd;
        const size_t head_att = (static_cast<size_t>(b) * g.heads + h) * S * S;
        double dsink = 0;
        for (int r0 = 0; r0 < S; r0 += kAttentionBlock) {
          const int r1 = std::min(S, r0 + kAttentionBlock), rows = r1 - r0;
          const int k0 = g.first_key(r0), keys = r1 - k0;
          const T* a_block = att + head_att + static_cast<size_t>(r0) * S;
          T* da_block = scratch + head_att + static_cast<size_t>(r0) * S;
          const T* d_block = d + static_cast<size_t>(r0) * g.ldo;
          gemm<T>(false, true, rows, keys, hd, 1, d_block, static_cast<int>(g.ldo),
                  v + v_offset + static_cast<size_t>(k0) * g.ldv, static_cast<int>(g.ldv), 0,
                  da_block + k0, S);
          gemm<T>(true, false, keys, hd, rows, 1, a_block + k0, S, d_block,
                  static_cast<int>(g.ldo), 1, dv + v_offset + static_cast<size_t>(k0) * g.ldv,
                  static_cast<int>(g.ldv));
          for (int t = r0; t < r1; ++t) {
            const T* a = att + head_att + static_cast<size_t>(t) * S;
            T* da = scratch + head_att + static_cast<size_t>(t) * S;
            const int lo = g.first_key(t);
            T weighted = 0, kept = 0;
            SWITCHYARD_OMP(omp simd reduction(+ : weighted, kept))
            for (int t2 = lo; t2 <= t; ++t2) {
              weighted += a[t2] * da[t2];
              kept += a[t2];
            }
            if (sinks) dsink -= static_cast<double>((T(1) - kept) * weighted);
            SWITCHYARD_OMP(omp simd)
            for (int t2 = lo; t2 <= t; ++t2) da[t2] = a[t2] * (da[t2] - weighted) * scale;
            for (int t2 = k0; t2 < lo; ++t2) da[t2] = 0;    // outside the window: no gradient
            for (int t2 = t + 1; t2 < r1; ++t2) da[t2] = 0;  // masked: no gradient
          }
          gemm<T>(false, false, rows, hd, keys, 1, da_block + k0, S,
                  k + kv_offset + static_cast<size_t>(k0) * g.ldk, static_cast<int>(g.ldk), 1,
                  dq + q_offset + static_cast<size_t>(r0) * g.ldq, static_cast<int>(g.ldq));
          gemm<T>(true, false, keys, hd, rows, 1, da_block + k0, S,
                  q + q_offset + static_cast<size_t>(r0) * g.ldq, static_cast<int>(g.ldq), 1,
                  dk + kv_offset + static_cast<size_t>(k0) * g.ldk, static_cast<int>(g.ldk));
        }
        if (sinks && dsinks) {
          SWITCHYARD_OMP(omp atomic)
          dsinks[h] += static_cast<float>(dsink);
        }
      }
    }
  }
}

// One decoding position for B sequences over a dense cache k_cache, v_cache [B, heads, max_T,
// head_dim]: row b of k and v is stored at `pos`, then row b of q attends over positions 0..pos
// into row b of out. Online softmax (running max and sum), so no buffer of scores is needed.
template <typename T>
void attention_decode(T* out, int64_t ldo, const T* q, int64_t ldq, const T* k, int64_t ldk,
                      const T* v, int64_t ldv, T* k_cache, T* v_cache, int B, int pos, int max_T,
                      int heads, int head_dim) {
  const int hd = head_dim;
  const T scale = T(1) / std::sqrt(static_cast<T>(hd));
  const bool parallel = static_cast<size_t>(B) * (pos + 1) * heads * hd > kParallelThreshold;
  SWITCHYARD_OMP_FOR(collapse(2) schedule(static) if (parallel))
  for (int b = 0; b < B; ++b) {
    for (int h = 0; h < heads; ++h) {
      const T* qh = q + static_cast<size_t>(b) * ldq + static_cast<size_t>(h) * hd;
      const size_t cache = (static_cast<size_t>(b) * heads + h) * max_T * hd;
      T* kc = k_cache + cache;
      T* vc = v_cache + cache;
      std::memcpy(kc + static_cast<size_t>(pos) * hd,
                  k + static_cast<size_t>(b) * ldk + static_cast<size_t>(h) * hd, sizeof(T) * hd);
      std::memcpy(vc + static_cast<size_t>(pos) * hd,
                  v + static_cast<size_t>(b) * ldv + static_cast<size_t>(h) * hd, sizeof(T) * hd);
      T* o = out + static_cast<size_t>(b) * ldo + static_cast<size_t>(h) * hd;
      for (int i = 0; i < hd; ++i) o[i] = 0;
      T max_score = -std::numeric_limits<T>::infinity();
      T sum = 0;
      for (int t2 = 0; t2 <= pos; ++t2) {
        const T s = dot(qh, kc + static_cast<size_t>(t2) * hd, hd) * scale;
        if (s > max_score) {
          const T shrink = exp_vec(max_score - s);  // exp(-inf) = 0 on the first position
          sum *= shrink;
          SWITCHYARD_OMP(omp simd)
          for (int i = 0; i < hd; ++i) o[i] *= shrink;
          max_score = s;
        }
        const T w = exp_vec(s - max_score);
        sum += w;
        const T* vr = vc + static_cast<size_t>(t2) * hd;
        SWITCHYARD_OMP(omp simd)
        for (int i = 0; i < hd; ++i) o[i] += w * vr[i];
      }
      const T inv = T(1) / sum;
      SWITCHYARD_OMP(omp simd)
      for (int i = 0; i < hd; ++i) o[i] *= inv;
    }
  }
}

// Instantiated for float and double once, in attention_kernels.cc (see cpu_kernels.h).
#define SWITCHYARD_CPU_ATTENTION_INSTANCES(PREFIX, T)                                             \
  PREFIX template void attention_forward<T>(T*, T*, const T*, const T*, const T*, const float*,   \
                                            const AttentionGeometry&, T);                         \
  PREFIX template void attention_backward<T>(T*, T*, T*, float*, T*, const T*, const T*,          \
                                             const T*, const T*, const T*, const float*,          \
                                             const AttentionGeometry&, T);                        \
  PREFIX template void attention_decode<T>(T*, int64_t, const T*, int64_t, const T*, int64_t,     \
                                           const T*, int64_t, T*, T*, int, int, int, int, int);   \
  PREFIX template void kv_cache_write<T>(T*, T*, const T*, int64_t, const T*, int64_t,            \
                                         const int32_t*, int, int, int);                          \
  PREFIX template void paged_attention<T, T>(T*, const T*, const T*, const T*, const int32_t*,    \
                                          const int32_t*, const int32_t*, const float*,           \
                                          const PagedGeometry&, T);

SWITCHYARD_CPU_ATTENTION_INSTANCES(extern, float)
SWITCHYARD_CPU_ATTENTION_INSTANCES(extern, double)
// bf16 mode's form, over a cache of bf16 bits: instantiated here too, so that code built without
// the kernels' architecture flags (tests, benchmarks) calls the vectorised one.
extern template void paged_attention<float, uint16_t>(float*, const float*, const uint16_t*,
                                                      const uint16_t*, const int32_t*,
                                                      const int32_t*, const int32_t*,
                                                      const float*, const PagedGeometry&, float);

}  // namespace switchyard::backend::cpu
