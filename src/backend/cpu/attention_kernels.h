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
//     online softmax over 16-position-or-so cache blocks.
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
#include "backend/cpu/transpose16.h"

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

// ---- the paged cache: [blocks, block_size, kv_heads, head_dim] ----

struct PagedGeometry {
  int heads = 0, kv_heads = 0, head_dim = 0;
  int window = 0;
  int block_size = 0;
  int sequences = 0;
  int max_blocks = 0;     // columns of block_tables
  int64_t ldq = 0, ldo = 0;
  int group() const { return heads / kv_heads; }
};

// Row n of k and v (row strides ldk, ldv) to slot slots[n] of the caches; negative slots skip.
template <typename T>
void kv_cache_write(T* k_cache, T* v_cache, const T* k, int64_t ldk, const T* v, int64_t ldv,
                    const int32_t* slots, int N, int kv_heads, int head_dim) {
  const size_t row = static_cast<size_t>(kv_heads) * head_dim;
  SWITCHYARD_OMP_FOR(schedule(static) if (static_cast<size_t>(N) * row > kParallelThreshold))
  for (int n = 0; n < N; ++n) {
    if (slots[n] < 0) continue;
    const size_t slot = static_cast<size_t>(slots[n]);
    std::memcpy(k_cache + slot * row, k + static_cast<size_t>(n) * ldk, sizeof(T) * row);
    std::memcpy(v_cache + slot * row, v + static_cast<size_t>(n) * ldv, sizeof(T) * row);
  }
}

// A cached key or value element as T: the paged cache holds T itself, or bf16 bits (uint16_t) in
// bf16 mode, widened as they are read.
template <typename T, typename C>
inline T cached(C x) {
  if constexpr (std::is_same_v<C, uint16_t>) {
    return static_cast<T>(std::bit_cast<float>(static_cast<uint32_t>(x) << 16));
  } else {
    return x;
  }
}

// Paged attention works on tiles of up to kPagedRows query rows of one (sequence, head) against
// chunks of up to kPagedKeys cached positions. Every row's arithmetic is the same whatever tile it
// sits in (a row's scores, maxima and sums never mix with another row's), so a row gets the same
// bits in a one-pass prompt, a chunk of one or a decode batch.
inline constexpr int kPagedRows = 16, kPagedKeys = 16;

template <typename T>
struct PagedTile {
  std::vector<T> q;     // [kPagedRows][head_dim]: the tile's queries times scale, zero rows past it
  std::vector<T> keys;  // [head_dim][kPagedKeys]: a chunk's keys transposed, zeros past the chunk
  T scores[kPagedRows][kPagedKeys];
  T max_score[kPagedRows], sum[kPagedRows];
  explicit PagedTile(int head_dim)
      : q(static_cast<size_t>(head_dim) * kPagedRows), keys(static_cast<size_t>(head_dim) * kPagedKeys) {}
};

// keys[d][j] = k[j][d] for the chunk's n positions (rows of stride row), zeros after them.
template <typename T, typename C>
void transpose_key_chunk(T* keys, const C* k, int n, size_t row, int hd) {
#if defined(__AVX512F__)
  // A full chunk of fp32 keys: 16 x 16 blocks transposed in registers, not one float at a time
  // (a decoded token transposes every key of its context once per head).
  if constexpr (std::is_same_v<T, float> && std::is_same_v<C, float>) {
    if (n == kPagedKeys && hd % 16 == 0) {
      static_assert(kPagedKeys == 16);
      for (int d0 = 0; d0 < hd; d0 += 16) {
        __m512 r[16];
        for (int j = 0; j < 16; ++j) r[j] = _mm512_loadu_ps(k + j * row + d0);
        transpose16(r);
        for (int d = 0; d < 16; ++d) _mm512_storeu_ps(keys + static_cast<size_t>(d0 + d) * 16, r[d]);
      }
      return;
    }
  }
#endif
  for (int d = 0; d < hd; ++d) {
    T* kd = keys + static_cast<size_t>(d) * kPagedKeys;
    for (int j = 0; j < kPagedKeys; ++j) kd[j] = j < n ? cached<T>(k[j * row + d]) : T(0);
  }
}

// scores[r][j] = q[r] . k[j] for the tile's first `rows` rows and every position: head_dim steps,
// each one vector of positions per row, rows side by side so the sums advance independently. Rows
// past `rows` are not computed: a decode tile has one row of its 16.
template <typename T>
void chunk_scores(PagedTile<T>& t, int hd, int rows) {
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < kPagedKeys; ++j) t.scores[r][j] = T(0);
  for (int d = 0; d < hd; ++d) {
    const T* kd = t.keys.data() + static_cast<size_t>(d) * kPagedKeys;
    for (int r = 0; r < rows; ++r) {
      const T qd = t.q[static_cast<size_t>(r) * hd + d];
      SWITCHYARD_OMP(omp simd)
      for (int j = 0; j < kPagedKeys; ++j) t.scores[r][j] += qd * kd[j];
    }
  }
}

// Row r's online softmax over the chunk's positions [j0, j1): raise the running max (rescaling
// the output and sum), then add exp(score - max) and its share of the values to them.
template <typename T, typename C>
void absorb_chunk(PagedTile<T>& t, int r, int j0, int j1, T* o, const C* v, size_t row, int hd) {
  T& m = t.max_score[r];
  T chunk_max = m;
  for (int j = j0; j < j1; ++j) chunk_max = std::max(chunk_max, t.scores[r][j]);
  if (chunk_max > m) {
    const T shrink = exp_vec(m - chunk_max);  // exp(-inf) = 0 on the first chunk
    t.sum[r] *= shrink;
    SWITCHYARD_OMP(omp simd)
    for (int d = 0; d < hd; ++d) o[d] *= shrink;
    m = chunk_max;
  }
  T p[kPagedKeys];
  SWITCHYARD_OMP(omp simd)
  for (int j = 0; j < kPagedKeys; ++j) p[j] = exp_vec(t.scores[r][j] - m);
  for (int j = j0; j < j1; ++j) t.sum[r] += p[j];
  // The output in pieces of 16 that stay in registers while the chunk's values pass.
  constexpr int kPiece = 16;
  int d0 = 0;
  for (; d0 + kPiece <= hd; d0 += kPiece) {
    T acc[kPiece];
    for (int d = 0; d < kPiece; ++d) acc[d] = o[d0 + d];
    for (int j = j0; j < j1; ++j) {
      const C* vj = v + j * row + d0;
      SWITCHYARD_OMP(omp simd)
      for (int d = 0; d < kPiece; ++d) acc[d] += p[j] * cached<T>(vj[d]);
    }
    for (int d = 0; d < kPiece; ++d) o[d0 + d] = acc[d];
  }
  for (int j = j0; j < j1; ++j) {
    for (int d = d0; d < hd; ++d) o[d] += p[j] * cached<T>(v[j * row + d]);
  }
}

// Asks for one head's keys and values of a cache block ahead of their use. A head's part of a
// position is a short run (head_dim values) a whole position's width away from the next, too
// short and too scattered for the hardware prefetcher: without this a decode step waits on memory
// latency for every key and value it reads.
template <typename C>
void prefetch_cache_block(const C* k_cache, const C* v_cache, size_t block_start, int bs,
                          size_t cache_row, int hd) {
  const size_t bytes = sizeof(C) * static_cast<size_t>(hd);
  for (int j = 0; j < bs; ++j) {
    const char* k = reinterpret_cast<const char*>(k_cache + block_start + j * cache_row);
    const char* v = reinterpret_cast<const char*>(v_cache + block_start + j * cache_row);
    for (size_t b = 0; b < bytes; b += 64) {
      __builtin_prefetch(k + b);
      __builtin_prefetch(v + b);
    }
  }
}

// Attention of each sequence's query rows over its cached context (ops.h PagedAttention). Threads
// split (sequence, head, tile of rows). A tile walks the cache blocks its rows need, a chunk of
// positions at a time: the chunk's keys are transposed once for all rows, every row's scores come
// out together, and each row keeps a running max, sum and output (online softmax). The cache holds
// T, or bf16 bits (C = uint16_t, bf16 mode) widened as they are read.
template <typename T, typename C = T>
void paged_attention(T* out, const T* q, const C* k_cache, const C* v_cache,
                     const int32_t* block_tables, const int32_t* query_start,
                     const int32_t* context_len, const float* sinks, const PagedGeometry& g,
                     T scale) {
  const int hd = g.head_dim, bs = g.block_size;
  const size_t cache_row = static_cast<size_t>(g.kv_heads) * hd;  // one position's keys
  int max_rows = 0;
  for (int s = 0; s < g.sequences; ++s) {
    max_rows = std::max(max_rows, query_start[s + 1] - query_start[s]);
  }
  const int row_blocks = (max_rows + kPagedRows - 1) / kPagedRows;
  const long tasks = static_cast<long>(g.sequences) * g.heads * row_blocks;
  SWITCHYARD_OMP(omp parallel if (tasks > 1))
  {
    PagedTile<T> t(hd);
    SWITCHYARD_OMP(omp for schedule(dynamic, 1))
    for (long task = 0; task < tasks; ++task) {
      const int s = static_cast<int>(task / (static_cast<long>(g.heads) * row_blocks));
      const int h = static_cast<int>(task / row_blocks % g.heads);
      const int nq = query_start[s + 1] - query_start[s];
      const int r0 = static_cast<int>(task % row_blocks) * kPagedRows;
      const int rows = std::min(nq - r0, kPagedRows);
      if (rows <= 0) continue;
      const int kvh = h / g.group(), first_pos = context_len[s] - nq + r0;
      const int32_t* table = block_tables + static_cast<size_t>(s) * g.max_blocks;
      auto first_key = [&](int pos) { return g.window > 0 ? std::max(0, pos - g.window + 1) : 0; };
      auto row_out = [&](int r) {
        return out + static_cast<size_t>(query_start[s] + r0 + r) * g.ldo + static_cast<size_t>(h) * hd;
      };
      for (int r = 0; r < kPagedRows; ++r) {
        T* qr = t.q.data() + static_cast<size_t>(r) * hd;
        const T* src = q + static_cast<size_t>(query_start[s] + r0 + r) * g.ldq + static_cast<size_t>(h) * hd;
        for (int d = 0; d < hd; ++d) qr[d] = r < rows ? src[d] * scale : T(0);
        if (r >= rows) continue;
        std::fill(row_out(r), row_out(r) + hd, T(0));
        t.max_score[r] = sinks ? static_cast<T>(sinks[h]) : -std::numeric_limits<T>::infinity();
        t.sum[r] = sinks ? T(1) : T(0);  // the sink's exp(sink - max), with max = sink
      }
      const int lo = first_key(first_pos), hi = first_pos + rows - 1;
      auto block_start_of = [&](int blk) {
        return static_cast<size_t>(table[blk]) * bs * cache_row + static_cast<size_t>(kvh) * hd;
      };
      prefetch_cache_block(k_cache, v_cache, block_start_of(lo / bs), bs, cache_row, hd);
      for (int blk = lo / bs; blk <= hi / bs; ++blk) {
        const size_t block_start = block_start_of(blk);
        if (blk < hi / bs) {
          prefetch_cache_block(k_cache, v_cache, block_start_of(blk + 1), bs, cache_row, hd);
        }
        const int in_block = std::min(bs, hi + 1 - blk * bs);  // positions anyone needs
        for (int c0 = 0; c0 < in_block; c0 += kPagedKeys) {
          const int n = std::min(kPagedKeys, in_block - c0), first = blk * bs + c0;
          const C* kb = k_cache + block_start + c0 * cache_row;
          const C* vb = v_cache + block_start + c0 * cache_row;
          transpose_key_chunk(t.keys.data(), kb, n, cache_row, hd);
          chunk_scores(t, hd, rows);
          for (int r = 0; r < rows; ++r) {
            const int pos = first_pos + r;
            const int j0 = std::max(0, first_key(pos) - first), j1 = std::min(n, pos + 1 - first);
            if (j0 < j1) absorb_chunk(t, r, j0, j1, row_out(r), vb, cache_row, hd);
          }
        }
      }
      for (int r = 0; r < rows; ++r) {
        const T inv = T(1) / t.sum[r];
        T* o = row_out(r);
        SWITCHYARD_OMP(omp simd)
        for (int d = 0; d < hd; ++d) o[d] *= inv;
      }
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

}  // namespace switchyard::backend::cpu
