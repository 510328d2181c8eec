// The paged KV cache on the CPU (ops.h KvCacheWrite, PagedAttention): writing rows to their slots,
// and attention of each sequence's query rows over its cached context, an online softmax over
// chunks of up to 16 cached positions. Part of attention_kernels.h, which includes it.
//
// A row's arithmetic is the same whatever tile of rows or group of chunks it is computed in (its
// scores, maxima, sums and outputs never mix with another row's, and each sum runs in one fixed
// order), so a row gets the same bits in a one-pass prompt, a chunk of one, a decode batch or a
// recomputation after preemption.
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
#include "backend/cpu/transpose16.h"

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
// groups of up to kChunkGroup chunks of up to kPagedKeys cached positions. A group's scores are
// computed together: a decoded token's tile has one row, whose score sums would otherwise be one
// chain of head_dim dependent multiply-adds per chunk, waiting on each other's latency.
inline constexpr int kPagedRows = 16, kPagedKeys = 16, kChunkGroup = 4;

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
  std::vector<T> q;     // [kPagedRows][head_dim]: the tile's queries times scale
  std::vector<T> keys;  // [kChunkGroup][head_dim][kPagedKeys]: chunks' keys transposed, zeros past n
  T scores[kPagedRows][kChunkGroup][kPagedKeys];
  T max_score[kPagedRows], sum[kPagedRows];
  explicit PagedTile(int head_dim)
      : q(static_cast<size_t>(head_dim) * kPagedRows),
        keys(static_cast<size_t>(head_dim) * kPagedKeys * kChunkGroup) {}
  T* chunk_keys(int g, int hd) { return keys.data() + static_cast<size_t>(g) * hd * kPagedKeys; }
};

// The AVX-512 kernels below take fp32 math with head_dim a whole number of vectors; any other
// case (double, AVX2 builds, odd head sizes) takes the portable loops. The choice depends on the
// types and the head size only, never on a tile's rows, so every row of a run takes the same one.
template <typename T>
inline bool vector_head(int hd) {
#if defined(__AVX512F__)
  return std::is_same_v<T, float> && hd % 16 == 0;
#else
  (void)hd;
  return false;
#endif
}

#if defined(__AVX512F__)
// 16 cached values from p, widened to fp32 (bf16 bits shift into the high half).
template <typename C>
inline __m512 load_cached16(const C* p) {
  if constexpr (std::is_same_v<C, uint16_t>) {
    const __m256i bits = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bits), 16));
  } else {
    return _mm512_loadu_ps(p);
  }
}
#endif

// keys[d][j] = k[j][d] for the chunk's n positions (rows of stride row), zeros after them.
template <typename T, typename C>
void transpose_key_chunk(T* keys, const C* k, int n, size_t row, int hd) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (vector_head<T>(hd)) {  // 16 x 16 blocks transposed in registers
      static_assert(kPagedKeys == 16);
      for (int d0 = 0; d0 < hd; d0 += 16) {
        __m512 r[16];
        for (int j = 0; j < 16; ++j) r[j] = j < n ? load_cached16(k + j * row + d0) : _mm512_setzero_ps();
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

#if defined(__AVX512F__)
// Scores of NR rows from q against G transposed chunks: NR * G sums side by side, each a chain of
// fused multiply-adds from zero over d = 0 .. hd - 1.
template <int NR, int G>
void vector_scores(PagedTile<float>& t, int r0, int hd) {
  __m512 acc[NR][G];
  for (int i = 0; i < NR; ++i)
    for (int g = 0; g < G; ++g) acc[i][g] = _mm512_setzero_ps();
  const float* q = t.q.data() + static_cast<size_t>(r0) * hd;
  const float* keys = t.keys.data();
  const size_t chunk_stride = static_cast<size_t>(hd) * kPagedKeys;
  for (int d = 0; d < hd; ++d) {
    for (int i = 0; i < NR; ++i) {
      const __m512 qd = _mm512_set1_ps(q[static_cast<size_t>(i) * hd + d]);
      for (int g = 0; g < G; ++g) {
        const __m512 kd = _mm512_loadu_ps(keys + g * chunk_stride + static_cast<size_t>(d) * kPagedKeys);
        acc[i][g] = _mm512_fmadd_ps(qd, kd, acc[i][g]);
      }
    }
  }
  for (int i = 0; i < NR; ++i)
    for (int g = 0; g < G; ++g) _mm512_storeu_ps(t.scores[r0 + i][g], acc[i][g]);
}

// Rows two at a time, then the last one alone.
template <int G>
void vector_scores_for_rows(PagedTile<float>& t, int hd, int rows) {
  int r = 0;
  for (; r + 2 <= rows; r += 2) vector_scores<2, G>(t, r, hd);
  if (r < rows) vector_scores<1, G>(t, r, hd);
}
#endif

// scores[r][g][j] = q[r] . keys of chunk g's position j, for the tile's first `rows` rows and the
// group's first `chunks` chunks (the rest of the tile's 16 rows are not computed: a decode tile
// has one row).
template <typename T>
void group_scores(PagedTile<T>& t, int hd, int rows, int chunks) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (vector_head<T>(hd)) {
      static_assert(kChunkGroup == 4);
      switch (chunks) {
        case 1: vector_scores_for_rows<1>(t, hd, rows); return;
        case 2: vector_scores_for_rows<2>(t, hd, rows); return;
        case 3: vector_scores_for_rows<3>(t, hd, rows); return;
        default: vector_scores_for_rows<4>(t, hd, rows); return;
      }
    }
  }
#endif
  for (int r = 0; r < rows; ++r) {
    for (int g = 0; g < chunks; ++g) {
      const T* keys = t.chunk_keys(g, hd);
      T* s = t.scores[r][g];
      for (int j = 0; j < kPagedKeys; ++j) s[j] = T(0);
      for (int d = 0; d < hd; ++d) {
        const T qd = t.q[static_cast<size_t>(r) * hd + d];
        const T* kd = keys + static_cast<size_t>(d) * kPagedKeys;
        for (int j = 0; j < kPagedKeys; ++j) s[j] = std::fma(qd, kd[j], s[j]);
      }
    }
  }
}

// o[d] = o[d] * shrink + sum over j in [j0, j1) of p[j] * v[j][d], the sum in ascending j, each
// step one fused multiply-add.
template <typename T, typename C>
void absorb_values(T* o, T shrink, const T* p, int j0, int j1, const C* v, size_t row, int hd) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    if (vector_head<T>(hd)) {
      constexpr int kVectors = 4;  // 64 outputs in registers while the chunk's values pass
      const __m512 scale = _mm512_set1_ps(shrink);
      for (int d0 = 0; d0 < hd; d0 += 16 * kVectors) {
        const int vectors = std::min(kVectors, (hd - d0) / 16);
        __m512 acc[kVectors];
        for (int i = 0; i < kVectors; ++i) {
          acc[i] = i < vectors ? _mm512_mul_ps(_mm512_loadu_ps(o + d0 + 16 * i), scale)
                               : _mm512_setzero_ps();
        }
        for (int j = j0; j < j1; ++j) {
          const __m512 pj = _mm512_set1_ps(p[j]);
          const C* vj = v + j * row + d0;
          for (int i = 0; i < kVectors; ++i) {
            if (i < vectors) acc[i] = _mm512_fmadd_ps(pj, load_cached16(vj + 16 * i), acc[i]);
          }
        }
        for (int i = 0; i < vectors; ++i) _mm512_storeu_ps(o + d0 + 16 * i, acc[i]);
      }
      return;
    }
  }
#endif
  for (int d = 0; d < hd; ++d) {
    T acc = o[d] * shrink;
    for (int j = j0; j < j1; ++j) acc = std::fma(p[j], cached<T>(v[j * row + d]), acc);
    o[d] = acc;
  }
}

// Row r's online softmax over chunk g's positions [j0, j1): raise the running max (rescaling the
// output and sum), then add exp(score - max) and its share of the values to them.
template <typename T, typename C>
void absorb_chunk(PagedTile<T>& t, int r, int g, int j0, int j1, T* o, const C* v, size_t row,
                  int hd) {
  const T* scores = t.scores[r][g];
  T& m = t.max_score[r];
  T chunk_max = m;
  for (int j = j0; j < j1; ++j) chunk_max = std::max(chunk_max, scores[j]);
  T shrink = T(1);
  if (chunk_max > m) {
    shrink = exp_vec(m - chunk_max);  // exp(-inf) = 0 on the first chunk
    t.sum[r] *= shrink;
    m = chunk_max;
  }
  T p[kPagedKeys];
  SWITCHYARD_OMP(omp simd)
  for (int j = 0; j < kPagedKeys; ++j) p[j] = exp_vec(scores[j] - m);
  for (int j = j0; j < j1; ++j) t.sum[r] += p[j];
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

// A group of chunks against the tile's rows: keys transposed once for all rows, every row's
// scores computed together, then each row absorbs the chunks in position order.
template <typename T, typename C, typename RowOut>
void absorb_group(PagedTile<T>& t, const CacheChunk<C>* group, int chunks, const TileRows& tile,
                  size_t cache_row, int hd, RowOut&& row_out) {
  for (int g = 0; g < chunks; ++g) {
    transpose_key_chunk(t.chunk_keys(g, hd), group[g].k, group[g].n, cache_row, hd);
  }
  group_scores(t, hd, tile.rows, chunks);
  for (int r = 0; r < tile.rows; ++r) {
    const int pos = tile.first_pos + r;
    for (int g = 0; g < chunks; ++g) {
      const CacheChunk<C>& chunk = group[g];
      const int j0 = std::max(0, tile.first_key(pos) - chunk.first);
      const int j1 = std::min(chunk.n, pos + 1 - chunk.first);
      if (j0 < j1) absorb_chunk(t, r, g, j0, j1, row_out(r), chunk.v, cache_row, hd);
    }
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
// split (sequence, tile of rows, group of heads). A task walks the cache blocks its rows need,
// a group of chunks of positions at a time, and runs each of its heads over the group
// (absorb_group), each row keeping a running max, sum and output (online softmax). The cache holds
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
      auto absorb = [&](const CacheChunk<C>* chunks, int count) {
        for (int h = h0; h < h1; ++h) {
          const size_t head_offset = static_cast<size_t>(h / g.group() - kv0) * hd;
          CacheChunk<C> head_chunks[kChunkGroup];
          for (int i = 0; i < count; ++i) {
            head_chunks[i] = {chunks[i].k + head_offset, chunks[i].v + head_offset, chunks[i].n,
                              chunks[i].first};
          }
          absorb_group(tiles[h - h0], head_chunks, count, tile, cache_row, hd,
                       row_of(out, g.ldo, h));
        }
      };
      prefetch_cache_rows(k_cache, v_cache, block_start_of(lo / bs), bs, cache_row, task_bytes);
      CacheChunk<C> group[kChunkGroup];
      int chunks = 0;
      for (int blk = lo / bs; blk <= hi / bs; ++blk) {
        const size_t block_start = block_start_of(blk);
        if (blk < hi / bs) {
          prefetch_cache_rows(k_cache, v_cache, block_start_of(blk + 1), bs, cache_row,
                              task_bytes);
        }
        const int in_block = std::min(bs, hi + 1 - blk * bs);  // positions anyone needs
        for (int c0 = 0; c0 < in_block; c0 += kPagedKeys) {
          group[chunks++] = {k_cache + block_start + c0 * cache_row,
                             v_cache + block_start + c0 * cache_row,
                             std::min(kPagedKeys, in_block - c0), blk * bs + c0};
          if (chunks == kChunkGroup) {
            absorb(group, chunks);
            chunks = 0;
          }
        }
      }
      if (chunks > 0) absorb(group, chunks);
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
