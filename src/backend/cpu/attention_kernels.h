// Attention on the CPU, as function templates over the scalar type (float for the backend, double
// for the finite-difference tests), in the style of cpu_kernels.h.
//
// Every form shares one masking rule (ops.h AttentionSpec): a query at position p attends to keys
// at positions (p - window, p], all of [0, p] when window is 0; query head h reads key-value head
// h / (heads / kv_heads); with sinks, head h's softmax denominator also holds exp(sinks[h]).
//
//   attention_forward / attention_backward: windows of `seq` tokens for training and evaluation,
//     through small matrix products per (window, head) and block of query rows; the full
//     probabilities are the record the backward pass reads. q, k, v, out and their gradients
//     hold the scalar type, or bf16 bits that each task widens for its own heads (bf16 mode).
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

#include "backend/cpu/bf16_rows.h"
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

// Rows of one head: row r starts at data + r * ld.
template <typename T>
struct HeadRows {
  T* data = nullptr;
  int64_t ld = 0;
  T* row(int r) const { return data + static_cast<size_t>(r) * ld; }
};

// One head's rows [rows, head_dim] of a q/k/v/out-style tensor of `Stored` values, as the kernels'
// type T: in place when Stored is T; otherwise (bf16 bits, in bf16 mode) widened into a part of
// the task's own buffer, and narrowed back by store() where the kernel writes it. Widening per
// task keeps the copies in L1 and L2, where widening whole tensors before the op and narrowing
// them after would stream them through memory twice more.
template <typename T, typename Stored>
class StagedHead {
  static constexpr bool kInPlace = std::is_same_v<std::remove_const_t<Stored>, T>;
  using Value = std::conditional_t<std::is_const_v<Stored>, const T, T>;

 public:
  // Values of the task buffer one head takes (none in place).
  static size_t buffer_values(int rows, int head_dim) {
    return kInPlace ? 0 : static_cast<size_t>(rows) * head_dim;
  }
  // load: the rows are read (an input, or an output the kernel adds to). `buffer` holds
  // buffer_values(rows, head_dim) values.
  StagedHead(Stored* base, int64_t ld, int rows, int head_dim, T* buffer, bool load)
      : base_(base), ld_(ld), rows_(rows), head_dim_(head_dim) {
    if constexpr (kInPlace) {
      head_ = {base, ld};
    } else {
      head_ = {buffer, head_dim};
      for (int r = 0; load && r < rows; ++r) {
        widen_bf16_row(base + static_cast<size_t>(r) * ld, buffer + static_cast<size_t>(r) * head_dim,
                       static_cast<size_t>(head_dim));
      }
    }
  }
  HeadRows<Value> rows() const { return head_; }
  // The rows narrowed back to where they were widened from.
  void store() const {
    if constexpr (!kInPlace && !std::is_const_v<Stored>) {
      for (int r = 0; r < rows_; ++r) {
        narrow_bf16_row(head_.row(r), base_ + static_cast<size_t>(r) * ld_,
                        static_cast<size_t>(head_dim_));
      }
    }
  }

 private:
  Stored* base_;
  int64_t ld_;
  int rows_, head_dim_;
  HeadRows<Value> head_;
};

// The calling thread's buffer of at least n values of T, kept between calls (null for none).
template <typename T>
T* task_buffer(size_t n) {
  if (n == 0) return nullptr;
  thread_local std::vector<T> buffer;
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// Row t of the probabilities: the scores a[lo..t] (and the sink's logit when has_sink) softmaxed
// in place, zeros outside the mask. A NaN or infinite score makes the row NaN.
template <typename T>
void softmax_scores_row(T* a, int lo, int t, int S, bool has_sink, T sink) {
  T max_score = has_sink ? sink : -std::numeric_limits<T>::infinity();
  for (int t2 = lo; t2 <= t; ++t2) max_score = std::max(max_score, a[t2]);
  T sum = has_sink ? exp_vec(sink - max_score) : T(0);
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

// One window's head, a block of query rows at a time: out = softmax(scale q k^T, masked) v, with
// head_att [seq, seq] receiving the probabilities.
template <typename T>
void attention_forward_head(HeadRows<T> out, T* head_att, HeadRows<const T> q,
                            HeadRows<const T> k, HeadRows<const T> v, bool has_sink, T sink,
                            const AttentionGeometry& g, T scale) {
  const int S = g.seq, hd = g.head_dim;
  for (int r0 = 0; r0 < S; r0 += kAttentionBlock) {
    const int r1 = std::min(S, r0 + kAttentionBlock), rows = r1 - r0;
    const int k0 = g.first_key(r0), keys = r1 - k0;
    T* block = head_att + static_cast<size_t>(r0) * S;
    gemm<T>(false, true, rows, keys, hd, scale, q.row(r0), static_cast<int>(q.ld), k.row(k0),
            static_cast<int>(k.ld), 0, block + k0, S);
    for (int t = r0; t < r1; ++t) {
      softmax_scores_row(head_att + static_cast<size_t>(t) * S, g.first_key(t), t, S, has_sink,
                         sink);
    }
    gemm<T>(false, false, rows, hd, keys, 1, block + k0, S, v.row(k0), static_cast<int>(v.ld), 0,
            out.row(r0), static_cast<int>(out.ld));
  }
}

// out (rows of ldo) = softmax(scale q k^T, masked) v; att[batch, heads, seq, seq] gets the
// probabilities (zero outside the mask). sinks may be null. q, k, v and out hold T, or bf16 bits
// (Stored = uint16_t) that each task widens and narrows for its own head.
template <typename T, typename Stored>
void attention_forward(Stored* out, T* att, const Stored* q, const Stored* k, const Stored* v,
                       const float* sinks, const AttentionGeometry& g, T scale) {
  const int S = g.seq, hd = g.head_dim;
  const bool parallel = static_cast<size_t>(g.batch) * S * S * g.heads * hd > kParallelThreshold;
  using Input = StagedHead<T, const Stored>;
  const size_t part = Input::buffer_values(S, hd);  // per staged head: q, k, v, out
  SWITCHYARD_OMP_FOR(collapse(2) schedule(dynamic, 1) if (parallel))
  for (int b = 0; b < g.batch; ++b) {
    for (int h = 0; h < g.heads; ++h) {
      const size_t row0 = static_cast<size_t>(b) * S;
      const size_t q_col = static_cast<size_t>(h) * hd;
      const size_t kv_col = static_cast<size_t>(h / g.group()) * hd;
      T* buffer = task_buffer<T>(4 * part);
      const Input qh(q + row0 * g.ldq + q_col, g.ldq, S, hd, buffer, true);
      const Input kh(k + row0 * g.ldk + kv_col, g.ldk, S, hd, buffer + part, true);
      const Input vh(v + row0 * g.ldv + kv_col, g.ldv, S, hd, buffer + 2 * part, true);
      const StagedHead<T, Stored> oh(out + row0 * g.ldo + q_col, g.ldo, S, hd, buffer + 3 * part,
                                     false);
      T* head_att = att + (static_cast<size_t>(b) * g.heads + h) * S * S;
      attention_forward_head<T>(oh.rows(), head_att, qh.rows(), kh.rows(), vh.rows(),
                                sinks != nullptr, sinks ? static_cast<T>(sinks[h]) : T(0), g,
                                scale);
      oh.store();
    }
  }
}

// Row t of d(scores) from d(att) in place: att * (d(att) - rowsum(att * d(att))) * scale, zero
// outside the mask (from k0 on); returns the sink's share, -(1 - rowsum(att)) * rowsum(att * d(att)).
template <typename T>
double scores_gradient_row(T* da, const T* a, int k0, int lo, int t, int r1, T scale) {
  T weighted = 0, kept = 0;
  SWITCHYARD_OMP(omp simd reduction(+ : weighted, kept))
  for (int t2 = lo; t2 <= t; ++t2) {
    weighted += a[t2] * da[t2];
    kept += a[t2];
  }
  SWITCHYARD_OMP(omp simd)
  for (int t2 = lo; t2 <= t; ++t2) da[t2] = a[t2] * (da[t2] - weighted) * scale;
  for (int t2 = k0; t2 < lo; ++t2) da[t2] = 0;    // outside the window: no gradient
  for (int t2 = t + 1; t2 < r1; ++t2) da[t2] = 0;  // masked: no gradient
  return -static_cast<double>((T(1) - kept) * weighted);
}

// The gradients of one window's head, a block of query rows at a time: dq, dk, dv added to;
// head_scratch [seq, seq] holds d(att), then d(scores). Returns the sink's gradient.
template <typename T>
double attention_backward_head(HeadRows<T> dq, HeadRows<T> dk, HeadRows<T> dv, T* head_scratch,
                               HeadRows<const T> dout, const T* head_att, HeadRows<const T> q,
                               HeadRows<const T> k, HeadRows<const T> v,
                               const AttentionGeometry& g, T scale) {
  const int S = g.seq, hd = g.head_dim;
  double dsink = 0;
  for (int r0 = 0; r0 < S; r0 += kAttentionBlock) {
    const int r1 = std::min(S, r0 + kAttentionBlock), rows = r1 - r0;
    const int k0 = g.first_key(r0), keys = r1 - k0;
    const T* a_block = head_att + static_cast<size_t>(r0) * S;
    T* da_block = head_scratch + static_cast<size_t>(r0) * S;
    gemm<T>(false, true, rows, keys, hd, 1, dout.row(r0), static_cast<int>(dout.ld), v.row(k0),
            static_cast<int>(v.ld), 0, da_block + k0, S);
    gemm<T>(true, false, keys, hd, rows, 1, a_block + k0, S, dout.row(r0),
            static_cast<int>(dout.ld), 1, dv.row(k0), static_cast<int>(dv.ld));
    for (int t = r0; t < r1; ++t) {
      dsink += scores_gradient_row(head_scratch + static_cast<size_t>(t) * S,
                                   head_att + static_cast<size_t>(t) * S, k0, g.first_key(t), t,
                                   r1, scale);
    }
    gemm<T>(false, false, rows, hd, keys, 1, da_block + k0, S, k.row(k0), static_cast<int>(k.ld),
            1, dq.row(r0), static_cast<int>(dq.ld));
    gemm<T>(true, false, keys, hd, rows, 1, da_block + k0, S, q.row(r0), static_cast<int>(q.ld), 1,
            dk.row(k0), static_cast<int>(dk.ld));
  }
  return dsink;
}

// dq, dk, dv (laid out as q, k, v) += gradients of attention_forward's out given dout (rows of
// ldo); dsinks[heads] += the sinks' gradient when sinks are present. scratch[batch, heads, seq,
// seq] holds d(att) and then d(scores) in place. Per head and block of query rows:
//   d(att) = dout V^T, dV += att^T dout, d(scores) = att * (d(att) - rowsum(att * d(att))) * scale,
//   dQ += d(scores) K, dK += d(scores)^T Q, d(sink) -= p(sink) * rowsum(att * d(att)).
// Threads split (window, key-value head) pairs and run a group's query heads in turn, so each
// owns its columns of dk and dv. The operands other than att and scratch hold T, or bf16 bits
// (Stored = uint16_t) that each task widens and narrows for its own heads.
template <typename T, typename Stored>
void attention_backward(Stored* dq, Stored* dk, Stored* dv, float* dsinks, T* scratch,
                        const Stored* dout, const T* att, const Stored* q, const Stored* k,
                        const Stored* v, const float* sinks, const AttentionGeometry& g, T scale) {
  const int S = g.seq, hd = g.head_dim;
  const bool parallel = static_cast<size_t>(g.batch) * S * S * g.heads * hd > kParallelThreshold;
  using Input = StagedHead<T, const Stored>;
  using Output = StagedHead<T, Stored>;
  const size_t part = Input::buffer_values(S, hd);  // per staged head: k, v, dk, dv, q, dout, dq
  SWITCHYARD_OMP_FOR(collapse(2) schedule(dynamic, 1) if (parallel))
  for (int b = 0; b < g.batch; ++b) {
    for (int kvh = 0; kvh < g.kv_heads; ++kvh) {
      const size_t row0 = static_cast<size_t>(b) * S, kv_col = static_cast<size_t>(kvh) * hd;
      T* buffer = task_buffer<T>(7 * part);
      const Input kh(k + row0 * g.ldk + kv_col, g.ldk, S, hd, buffer, true);
      const Input vh(v + row0 * g.ldv + kv_col, g.ldv, S, hd, buffer + part, true);
      const Output dkh(dk + row0 * g.ldk + kv_col, g.ldk, S, hd, buffer + 2 * part, true);
      const Output dvh(dv + row0 * g.ldv + kv_col, g.ldv, S, hd, buffer + 3 * part, true);
      for (int h = kvh * g.group(); h < (kvh + 1) * g.group(); ++h) {
        const size_t q_col = static_cast<size_t>(h) * hd;
        const Input qh(q + row0 * g.ldq + q_col, g.ldq, S, hd, buffer + 4 * part, true);
        const Input douth(dout + row0 * g.ldo + q_col, g.ldo, S, hd, buffer + 5 * part, true);
        const Output dqh(dq + row0 * g.ldq + q_col, g.ldq, S, hd, buffer + 6 * part, true);
        const size_t head = (static_cast<size_t>(b) * g.heads + h) * S * S;
        const double dsink =
            attention_backward_head<T>(dqh.rows(), dkh.rows(), dvh.rows(), scratch + head,
                                       douth.rows(), att + head, qh.rows(), kh.rows(), vh.rows(),
                                       g, scale);
        dqh.store();
        if (sinks && dsinks) {
          SWITCHYARD_OMP(omp atomic)
          dsinks[h] += static_cast<float>(dsink);
        }
      }
      dkh.store();
      dvh.store();
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
  PREFIX template void attention_forward<T, T>(T*, T*, const T*, const T*, const T*,              \
                                               const float*, const AttentionGeometry&, T);        \
  PREFIX template void attention_backward<T, T>(T*, T*, T*, float*, T*, const T*, const T*,       \
                                                const T*, const T*, const T*, const float*,       \
                                                const AttentionGeometry&, T);                     \
  PREFIX template void attention_decode<T>(T*, int64_t, const T*, int64_t, const T*, int64_t,     \
                                           const T*, int64_t, T*, T*, int, int, int, int, int);   \
  PREFIX template void kv_cache_write<T>(T*, T*, const T*, int64_t, const T*, int64_t,            \
                                         const int32_t*, int, int, int);                          \
  PREFIX template void paged_attention<T, T>(T*, const T*, const T*, const T*, const int32_t*,    \
                                          const int32_t*, const int32_t*, const float*,           \
                                          const PagedGeometry&, T);

SWITCHYARD_CPU_ATTENTION_INSTANCES(extern, float)
SWITCHYARD_CPU_ATTENTION_INSTANCES(extern, double)
// bf16 mode's forms, over bf16 bits: instantiated here too, so that code built without the
// kernels' architecture flags (tests, benchmarks) calls the vectorised ones.
#define SWITCHYARD_CPU_BF16_ATTENTION_INSTANCES(PREFIX)                                           \
  PREFIX template void attention_forward<float, uint16_t>(uint16_t*, float*, const uint16_t*,     \
                                                          const uint16_t*, const uint16_t*,       \
                                                          const float*, const AttentionGeometry&, \
                                                          float);                                 \
  PREFIX template void attention_backward<float, uint16_t>(                                       \
      uint16_t*, uint16_t*, uint16_t*, float*, float*, const uint16_t*, const float*,             \
      const uint16_t*, const uint16_t*, const uint16_t*, const float*, const AttentionGeometry&,  \
      float);                                                                                     \
  PREFIX template void paged_attention<float, uint16_t>(float*, const float*, const uint16_t*,    \
                                                        const uint16_t*, const int32_t*,          \
                                                        const int32_t*, const int32_t*,           \
                                                        const float*, const PagedGeometry&, float);

SWITCHYARD_CPU_BF16_ATTENTION_INSTANCES(extern)

}  // namespace switchyard::backend::cpu
