// The paged KV cache on the CPU (ops.h KvCacheWrite, PagedAttention): writing rows to their slots,
// and attention of each sequence's query rows over its cached context, an online softmax over
// chunks of up to 16 cached positions. Part of attention_kernels.h, which includes it.
//
// A row's arithmetic is the same whatever tile of rows it is computed in (its scores, maxima, sums
// and outputs never mix with another row's, chunks start at fixed cache positions, and each sum
// runs in one fixed order), so a row gets the same bits in a one-pass prompt, a chunk of one, a
// decode batch or a recomputation after preemption.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/paged_attention_avx512.h"

namespace switchyard::backend::cpu {

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
// chunks of up to kPagedKeys cached positions.
inline constexpr int kPagedRows = 16, kPagedKeys = 16;

// Cached positions [first, first + n) of one head, n <= kPagedKeys: their keys and values, one
// position a cache row apart.
template <typename C>
struct CacheChunk {
  const C* k;
  const C* v;
  int n, first;
};

template <typename T>
struct PagedTile {
  std::vector<T> q;  // [kPagedRows][head_dim]: the tile's queries times scale
  T scores[kPagedRows][kPagedKeys] = {};
  T max_score[kPagedRows] = {}, sum[kPagedRows] = {};
  explicit PagedTile(int head_dim) : q(static_cast<size_t>(head_dim) * kPagedRows) {}
  const T* q_row(int r, int hd) const { return q.data() + static_cast<size_t>(r) * hd; }
};

// The AVX-512 steps (paged_attention_avx512.h) take fp32 math with head_dim a whole number of
// vectors; any other case (double, builds without AVX-512, odd head sizes) takes the portable
// loops. The choice depends on the types and the head size only, never on a tile's rows, so every
// row of a run takes the same one.
template <typename T>
inline bool vector_head(int hd) {
#if defined(SWITCHYARD_PAGED_AVX512)
  return std::is_same_v<T, float> && hd % 16 == 0;
#else
  (void)hd;
  return false;
#endif
}

// scores[j] = q . k[j] for a chunk's n positions (rows `row` apart), 0 after them. The portable
// form sums each score in one chain of fused multiply-adds over d = 0 .. hd - 1.
template <typename T, typename C>
void chunk_scores(const T* q, const C* k, int n, size_t row, int hd, T* scores) {
#if defined(SWITCHYARD_PAGED_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    if (vector_head<T>(hd)) return vector_chunk_scores(q, k, n, row, hd, scores);
  }
#endif
  for (int j = 0; j < kPagedKeys; ++j) {
    T s = T(0);
    if (j < n) {
      for (int d = 0; d < hd; ++d) s = std::fma(q[d], cached<T>(k[j * row + d]), s);
    }
    scores[j] = s;
  }
}

// o[d] = o[d] * shrink + sum over j in [j0, j1) of p[j] * v[j][d], the sum in ascending j, each
// step one fused multiply-add.
template <typename T, typename C>
void absorb_values(T* o, T shrink, const T* p, int j0, int j1, const C* v, size_t row, int hd) {
#if defined(SWITCHYARD_PAGED_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    if (vector_head<T>(hd)) return vector_absorb_values(o, shrink, p, j0, j1, v, row, hd);
  }
#endif
  for (int d = 0; d < hd; ++d) {
    T acc = o[d] * shrink;
    for (int j = j0; j < j1; ++j) acc = std::fma(p[j], cached<T>(v[j * row + d]), acc);
    o[d] = acc;
  }
}

// The greatest of scores[j0 .. j1), and the sum of p[j0 .. j1): in ascending j in the portable
// form, in a fixed tree in the vector one.
template <typename T>
T max_of(const T* scores, int j0, int j1, int hd) {
#if defined(SWITCHYARD_PAGED_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    if (vector_head<T>(hd)) return vector_max_of(scores, j0, j1);
  }
#endif
  T greatest = scores[j0];
  for (int j = j0 + 1; j < j1; ++j) greatest = std::max(greatest, scores[j]);
  return greatest;
}

template <typename T>
T sum_of(const T* p, int j0, int j1, int hd) {
#if defined(SWITCHYARD_PAGED_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    if (vector_head<T>(hd)) return vector_sum_of(p, j0, j1);
  }
#endif
  T sum = T(0);
  for (int j = j0; j < j1; ++j) sum += p[j];
  return sum;
}

// Row r's online softmax over the chunk's positions [j0, j1): raise the running max (rescaling the
// output and sum), then add exp(score - max) and its share of the values to them.
template <typename T, typename C>
void absorb_chunk(PagedTile<T>& t, int r, int j0, int j1, T* o, const C* v, size_t row, int hd) {
  const T* scores = t.scores[r];
  T& m = t.max_score[r];
  const T chunk_max = std::max(m, max_of(scores, j0, j1, hd));
  T shrink = T(1);
  if (chunk_max > m) {
    shrink = exp_vec(m - chunk_max);  // exp(-inf) = 0 on the first chunk
    t.sum[r] *= shrink;
    m = chunk_max;
  }
  T p[kPagedKeys];
  SWITCHYARD_OMP(omp simd)
  for (int j = 0; j < kPagedKeys; ++j) p[j] = exp_vec(scores[j] - m);
  t.sum[r] += sum_of(p, j0, j1, hd);
  absorb_values(o, shrink, p, j0, j1, v, row, hd);
}

// Asks for positions [0, positions) of a cache block ahead of their use: from each position, the
// `bytes` starting at `offset` (the task's heads' keys and values). Parts of positions a whole
// position's width apart are too short and too scattered for the hardware prefetcher: without this
// a decode step waits on memory latency for every key and value it reads.
template <typename C>
void prefetch_cache_rows(const C* k_cache, const C* v_cache, size_t offset, int positions,
                         size_t cache_row, size_t bytes) {
  for (int j = 0; j < positions; ++j) {
    const char* k = reinterpret_cast<const char*>(k_cache + offset + j * cache_row);
    const char* v = reinterpret_cast<const char*>(v_cache + offset + j * cache_row);
    for (size_t b = 0; b < bytes; b += 64) {
      __builtin_prefetch(k + b);
      __builtin_prefetch(v + b);
    }
  }
}

// One tile's rows: query row r sits at position first_pos + r and sees keys from first_key(pos).
struct TileRows {
  int rows, first_pos, window;
  int first_key(int pos) const { return window > 0 ? std::max(0, pos - window + 1) : 0; }
};

// A chunk against the tile's rows: every row's scores, then each row absorbs the positions it
// sees.
template <typename T, typename C, typename RowOut>
void absorb_chunk_in_rows(PagedTile<T>& t, const CacheChunk<C>& chunk, const TileRows& tile,
                          size_t cache_row, int hd, RowOut&& row_out) {
  for (int r = 0; r < tile.rows; ++r) {
    chunk_scores(t.q_row(r, hd), chunk.k, chunk.n, cache_row, hd, t.scores[r]);
  }
  for (int r = 0; r < tile.rows; ++r) {
    const int pos = tile.first_pos + r;
    const int j0 = std::max(0, tile.first_key(pos) - chunk.first);
    const int j1 = std::min(chunk.n, pos + 1 - chunk.first);
    if (j0 < j1) absorb_chunk(t, r, j0, j1, row_out(r), chunk.v, cache_row, hd);
  }
}

// The tile's queries times scale into t.q, its outputs zeroed, and each row's running max and sum
// started (from the head's sink, if any). Rows past `rows` are left as they are: nothing reads them.
template <typename T, typename RowIn, typename RowOut>
void start_tile(PagedTile<T>& t, int rows, int hd, T scale, const float* sinks, int h,
                RowIn&& row_in, RowOut&& row_out) {
  for (int r = 0; r < rows; ++r) {
    T* qr = t.q.data() + static_cast<size_t>(r) * hd;
    const T* src = row_in(r);
    for (int d = 0; d < hd; ++d) qr[d] = src[d] * scale;
    std::fill(row_out(r), row_out(r) + hd, T(0));
    t.max_score[r] = sinks ? static_cast<T>(sinks[h]) : -std::numeric_limits<T>::infinity();
    t.sum[r] = sinks ? T(1) : T(0);  // the sink's exp(sink - max), with max = sink
  }
}

// Heads one task covers. A task reads each cached position's part for its heads, side by side:
// a few heads' worth (kTaskHeads) gives the memory system longer runs to fetch than one head's
// (decode steps measured 15-25% faster with 2-4 heads than with 1 on Zen 5), while all of a
// position (every head) was slower again. With few tiles of rows (few sequences decoding) the
// heads spread thinner, so that every thread gets tasks.
inline constexpr int kTaskHeads = 4;
inline int heads_per_task(int heads, long row_tiles) {
#if defined(_OPENMP)
  const long wanted_tasks = 2L * omp_get_max_threads();
#else
  const long wanted_tasks = 1;
#endif
  const long groups = std::min<long>(heads, (wanted_tasks + row_tiles - 1) / row_tiles);
  return std::min(kTaskHeads, static_cast<int>((heads + groups - 1) / groups));
}

// Attention of each sequence's query rows over its cached context (ops.h PagedAttention). Threads
// split (sequence, tile of rows, group of heads). A task walks the cache blocks its rows need, a
// chunk of positions at a time, and runs each of its heads over the chunk (absorb_chunk_in_rows),
// each row keeping a running max, sum and output (online softmax). The cache holds T, or bf16 bits
// (C = uint16_t, bf16 mode) widened as they are read.
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
  const long row_tiles = static_cast<long>(g.sequences) * row_blocks;
  const int group_heads = heads_per_task(g.heads, row_tiles);
  const int head_groups = (g.heads + group_heads - 1) / group_heads;
  const long tasks = row_tiles * head_groups;
  SWITCHYARD_OMP(omp parallel if (tasks > 1))
  {
    std::vector<PagedTile<T>> tiles(group_heads, PagedTile<T>(hd));
    SWITCHYARD_OMP(omp for schedule(dynamic, 1))
    for (long task = 0; task < tasks; ++task) {
      const int s = static_cast<int>(task / (static_cast<long>(row_blocks) * head_groups));
      const int r0 = static_cast<int>(task / head_groups % row_blocks) * kPagedRows;
      const int h0 = static_cast<int>(task % head_groups) * group_heads;
      const int h1 = std::min(g.heads, h0 + group_heads);
      const int nq = query_start[s + 1] - query_start[s];
      const int rows = std::min(nq - r0, kPagedRows);
      if (rows <= 0) continue;
      const TileRows tile{rows, context_len[s] - nq + r0, g.window};
      const int32_t* table = block_tables + static_cast<size_t>(s) * g.max_blocks;
      auto row_of = [&](auto* base, int64_t ld, int h) {
        return [=](int r) {
          return base + static_cast<size_t>(query_start[s] + r0 + r) * ld + static_cast<size_t>(h) * hd;
        };
      };
      for (int h = h0; h < h1; ++h) {
        start_tile(tiles[h - h0], rows, hd, scale, sinks, h, row_of(q, g.ldq, h),
                   row_of(out, g.ldo, h));
      }
      // The task's key-value heads, side by side in every cached position.
      const int kv0 = h0 / g.group(), kv1 = (h1 - 1) / g.group() + 1;
      const size_t task_bytes = sizeof(C) * static_cast<size_t>(kv1 - kv0) * hd;
      const int lo = tile.first_key(tile.first_pos), hi = tile.first_pos + rows - 1;
      auto block_start_of = [&](int blk) {
        return static_cast<size_t>(table[blk]) * bs * cache_row + static_cast<size_t>(kv0) * hd;
      };
      auto absorb = [&](const CacheChunk<C>& chunk) {
        for (int h = h0; h < h1; ++h) {
          const size_t head_offset = static_cast<size_t>(h / g.group() - kv0) * hd;
          const CacheChunk<C> head_chunk{chunk.k + head_offset, chunk.v + head_offset, chunk.n,
                                         chunk.first};
          absorb_chunk_in_rows(tiles[h - h0], head_chunk, tile, cache_row, hd, row_of(out, g.ldo, h));
        }
      };
      prefetch_cache_rows(k_cache, v_cache, block_start_of(lo / bs), bs, cache_row, task_bytes);
      for (int blk = lo / bs; blk <= hi / bs; ++blk) {
        const size_t block_start = block_start_of(blk);
        if (blk < hi / bs) {
          prefetch_cache_rows(k_cache, v_cache, block_start_of(blk + 1), bs, cache_row,
                              task_bytes);
        }
        const int in_block = std::min(bs, hi + 1 - blk * bs);  // positions anyone needs
        for (int c0 = 0; c0 < in_block; c0 += kPagedKeys) {
          absorb({k_cache + block_start + c0 * cache_row, v_cache + block_start + c0 * cache_row,
                  std::min(kPagedKeys, in_block - c0), blk * bs + c0});
        }
      }
      for (int h = h0; h < h1; ++h) {
        const auto row_out = row_of(out, g.ldo, h);
        for (int r = 0; r < rows; ++r) {
          const T inv = T(1) / tiles[h - h0].sum[r];
          T* o = row_out(r);
          SWITCHYARD_OMP(omp simd)
          for (int d = 0; d < hd; ++d) o[d] *= inv;
        }
      }
    }
  }
}

}  // namespace switchyard::backend::cpu
