// The paged KV cache on NVIDIA GPUs (ops::KvCacheWrite, ops::PagedAttention): storing new keys and
// values into cache blocks, and attention of a flat batch's query rows over each sequence's
// cached context.
//
// Layout: each cache is [blocks, block_size, kv_heads, head_dim] (Act elements, dense), so the
// keys of position p of a sequence sit in block block_tables[s, p / block_size] at offset
// p % block_size. q and k, v rows may be strided (views of a packed projection); within a row the
// heads are dense blocks of head_dim. out is [N, heads * head_dim] with row stride ldo.
//
// Masking is ops::AttentionSpec's: the row at position p attends to positions (p - window, p] (all
// of [0, p] with window 0); query head h reads key-value head h / (heads / kv_heads); with sinks,
// head h's softmax denominator also holds exp(sinks[h]).
//
// The metadata (slots, block tables, query starts, context lengths) lives in device memory and is
// the caller's to get right, as token ids are; the host cannot check it without waiting for the
// device. The kernels never touch memory outside the caches for bad metadata: kv_cache_write
// skips a slot outside the cache, and paged_attention writes NaN for a row whose sequence or
// blocks are out of range, so that such a mistake shows rather than reading stray memory.
//
// Act is float or bf16; arithmetic is fp32. Every function queues its kernels on `stream`,
// launches nothing for empty sizes, and throws Error (check_launch) if a launch is refused.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/cuda_types.h"

namespace switchyard::backend::cuda {

// The largest head_dim paged_attention supports.
inline constexpr int kPagedMaxHeadSize = 128;

// Row n of k and v (row strides ldk, ldv; kv_heads * head_dim dense elements) goes to slot
// slots[n] of the caches (row slots[n] of [blocks * block_size, kv_heads * head_dim]); a negative
// slot, or one at or beyond `capacity` (blocks * block_size), skips the row.
template <typename Act>
void kv_cache_write(Act* k_cache, Act* v_cache, const Act* k, int64_t ldk, const Act* v,
                    int64_t ldv, const int32_t* slots, int N, int64_t capacity, int kv_heads,
                    int head_dim, cudaStream_t stream);

// Where the operands of paged_attention are and how they are shaped (host values).
struct PagedAttentionShape {
  int rows = 0;  // N, the query rows of all sequences
  int heads = 0, kv_heads = 0, head_dim = 0;  // 1 <= head_dim <= kPagedMaxHeadSize
  int window = 0;
  int block_size = 0;
  int64_t blocks = 0;     // blocks in each cache
  int sequences = 0;      // S >= 1 when rows > 0
  int max_blocks = 0;     // columns of block_tables
  int64_t ldq = 0, ldo = 0;
  float scale = 0;        // scores are q.k * scale
};

// out[N, heads * head_dim] = attention of each row of q over its sequence's cached context: the
// rows of sequence s are [query_start[s], query_start[s + 1]), its context holds context_len[s]
// positions, and its rows' positions run consecutively up to context_len[s] - 1. block_tables is
// [S, max_blocks] int32; sinks [heads] fp32 or null. One block of four warps per (row, head):
// the warps split the row's keys, each keeping a running max and sum (online softmax), and merge
// at the end; lanes split head_dim. Memory-bound: each row reads its keys and values once.
template <typename Act>
void paged_attention(Act* out, const Act* q, const Act* k_cache, const Act* v_cache,
                     const int32_t* block_tables, const int32_t* query_start,
                     const int32_t* context_len, const float* sinks,
                     const PagedAttentionShape& shape, cudaStream_t stream);

}  // namespace switchyard::backend::cuda
