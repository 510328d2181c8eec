// The paged KV cache kernels (see paged_attention_kernels.h for the contract).
#include "backend/cuda/paged_attention_kernels.h"

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_helpers.cuh"

namespace switchyard::backend::cuda {
namespace {

using device::from_float;
using device::kWarp;
using device::to_float;

constexpr float kLog2e = 1.4426950408889634f;

// ---- kv_cache_write ----

constexpr int kWriteThreads = 128;

// One block per row: its threads copy the row's kv_heads * head_dim elements of k and of v.
template <typename Act>
__global__ void __launch_bounds__(kWriteThreads)
    kv_cache_write_kernel(Act* k_cache, Act* v_cache, const Act* k, int64_t ldk, const Act* v,
                          int64_t ldv, const int32_t* slots, int64_t capacity, int width) {
  const int64_t n = blockIdx.x;
  const int32_t slot = slots[n];
  if (slot < 0 || slot >= capacity) return;  // the whole block leaves
  const Act* k_row = k + n * ldk;
  const Act* v_row = v + n * ldv;
  Act* k_dst = k_cache + static_cast<size_t>(slot) * width;
  Act* v_dst = v_cache + static_cast<size_t>(slot) * width;
  for (int i = threadIdx.x; i < width; i += kWriteThreads) {
    k_dst[i] = k_row[i];
    v_dst[i] = v_row[i];
  }
}

// ---- paged_attention ----

// Warps per block, and keys each warp scores per step (independent shuffle chains).
constexpr int kWarps = 4;
constexpr int kKeysPerStep = 4;

// One block per (row, head), blockIdx.x = row * heads + head. Warp w scores the row's keys in runs
// of kKeysPerStep (keys lo + 4w .. lo + 4w + 3, then kKeysPerStep * kWarps further on), lanes
// splitting head_dim (dim lane + 32 d), with its own running max m (log2 units) and sum l; the
// warps' partial results merge through shared memory at the end. A sink enters warp 0's softmax
// as a key with logit sinks[h] and no value. Rows whose metadata is out of range (sequence rows,
// context, block ids) come out NaN.
template <typename Act, int kHeadMax>
__global__ void __launch_bounds__(kWarps * kWarp)
    paged_attention_kernel(Act* out, const Act* q, const Act* k_cache, const Act* v_cache,
                           const int32_t* block_tables, const int32_t* query_start,
                           const int32_t* context_len, const float* sinks, PagedAttentionShape g,
                           float scale_log2) {
  constexpr int kDims = kHeadMax / kWarp;  // dims per lane
  constexpr int kKeyStride = kKeysPerStep * kWarps;
  __shared__ float part_acc[kWarps][kHeadMax];
  __shared__ float part_m[kWarps];
  __shared__ float part_l[kWarps];
  __shared__ int part_bad[kWarps];

  const int row = static_cast<int>(blockIdx.x / g.heads);
  const int h = static_cast<int>(blockIdx.x % g.heads);
  const int lane = threadIdx.x % kWarp;
  const int warp = threadIdx.x / kWarp;
  const int hd = g.head_dim;

  // The row's sequence: the last s whose rows start at or before it.
  int s = 0;
  for (int hi = g.sequences; hi - s > 1;) {
    const int mid = (s + hi) / 2;
    if (query_start[mid] <= row) {
      s = mid;
    } else {
      hi = mid;
    }
  }
  const int first_row = query_start[s];
  const int rows = query_start[s + 1] - first_row;
  const int context = context_len[s];
  const int pos = context - rows + (row - first_row);
  bool bad = row < first_row || row - first_row >= rows || pos < 0 ||
             context > static_cast<int64_t>(g.max_blocks) * g.block_size;
  const int key_lo = g.window > 0 ? max(0, pos - g.window + 1) : 0;
  const int32_t* table = block_tables + static_cast<size_t>(s) * g.max_blocks;
  const int kv_head = h / (g.heads / g.kv_heads);
  const size_t cache_row = static_cast<size_t>(g.kv_heads) * hd;  // one position's elements

  const Act* q_row = q + static_cast<size_t>(row) * g.ldq + static_cast<size_t>(h) * hd;
  float qr[kDims], acc[kDims];
#pragma unroll
  for (int d = 0; d < kDims; ++d) {
    const int dim = lane + kWarp * d;
    qr[d] = dim < hd ? to_float(q_row[dim]) : 0.0f;
    acc[d] = 0.0f;
  }
  const bool sink = sinks != nullptr && warp == 0;
  float m = sink ? sinks[h] * kLog2e : -INFINITY;
  float l = sink ? 1.0f : 0.0f;  // the sink's exp2(m - m)
  // The loop bounds are the same for every lane of a warp, so its shuffles stay converged.
  for (int j0 = key_lo + kKeysPerStep * warp; !bad && j0 <= pos; j0 += kKeyStride) {
    const Act* k_rows[kKeysPerStep];
    const Act* v_rows[kKeysPerStep];
    float scores[kKeysPerStep];
#pragma unroll
    for (int u = 0; u < kKeysPerStep; ++u) {
      const int j = j0 + u;
      k_rows[u] = v_rows[u] = nullptr;
      float dot = 0.0f;
      if (j <= pos) {
        const int32_t block = table[j / g.block_size];
        if (block < 0 || block >= g.blocks) {
          bad = true;
        } else {
          const size_t at = (static_cast<size_t>(block) * g.block_size + j % g.block_size) *
                                cache_row + static_cast<size_t>(kv_head) * hd;
          k_rows[u] = k_cache + at;
          v_rows[u] = v_cache + at;
#pragma unroll
          for (int d = 0; d < kDims; ++d) {
            const int dim = lane + kWarp * d;
            if (dim < hd) dot = fmaf(qr[d], to_float(k_rows[u][dim]), dot);
          }
        }
      }
      scores[u] = dot;
    }
    float step_max = -INFINITY;
#pragma unroll
    for (int u = 0; u < kKeysPerStep; ++u) {
      scores[u] = device::warp_sum(scores[u]);
      scores[u] = k_rows[u] != nullptr ? scores[u] * scale_log2 : -INFINITY;
      step_max = fmaxf(step_max, scores[u]);
    }
    const float m_new = fmaxf(m, step_max);
    const float alpha = exp2f(m - m_new);  // 0 on a first step without a sink
    l *= alpha;
#pragma unroll
    for (int d = 0; d < kDims; ++d) acc[d] *= alpha;
#pragma unroll
    for (int u = 0; u < kKeysPerStep; ++u) {
      if (k_rows[u] == nullptr) continue;
      const float p = exp2f(scores[u] - m_new);
      l += p;
#pragma unroll
      for (int d = 0; d < kDims; ++d) {
        const int dim = lane + kWarp * d;
        if (dim < hd) acc[d] = fmaf(p, to_float(v_rows[u][dim]), acc[d]);
      }
    }
    m = m_new;
  }

  if (lane == 0) {
    part_m[warp] = m;
    part_l[warp] = l;
    part_bad[warp] = bad;
  }
#pragma unroll
  for (int d = 0; d < kDims; ++d) part_acc[warp][lane + kWarp * d] = acc[d];
  __syncthreads();

  // Merge: a warp without keys has m = -inf and weight exp2f(-inf) = 0; warp 0 always has the
  // key at key_lo, so the overall max is finite for a good row.
  float m_all = -INFINITY;
  bool any_bad = false;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    m_all = fmaxf(m_all, part_m[w]);
    any_bad = any_bad || part_bad[w] != 0;
  }
  float l_all = 0.0f;
  float weight[kWarps];
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    weight[w] = exp2f(part_m[w] - m_all);
    l_all += weight[w] * part_l[w];
  }
  const float inv_l = any_bad ? NAN : 1.0f / l_all;
  Act* o = out + static_cast<size_t>(row) * g.ldo + static_cast<size_t>(h) * hd;
  for (int i = threadIdx.x; i < hd; i += kWarps * kWarp) {
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) sum += weight[w] * part_acc[w][i];
    o[i] = from_float<Act>(sum * inv_l);
  }
}

template <typename Act, int kHeadMax>
void launch_paged(Act* out, const Act* q, const Act* k_cache, const Act* v_cache,
                  const int32_t* block_tables, const int32_t* query_start,
                  const int32_t* context_len, const float* sinks, const PagedAttentionShape& shape,
                  cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(shape.rows) * static_cast<unsigned>(shape.heads);
  paged_attention_kernel<Act, kHeadMax><<<blocks, kWarps * kWarp, 0, stream>>>(
      out, q, k_cache, v_cache, block_tables, query_start, context_len, sinks, shape,
      shape.scale * kLog2e);
  check_launch("paged_attention");
}

}  // namespace

template <typename Act>
void kv_cache_write(Act* k_cache, Act* v_cache, const Act* k, int64_t ldk, const Act* v,
                    int64_t ldv, const int32_t* slots, int N, int64_t capacity, int kv_heads,
                    int head_dim, cudaStream_t stream) {
  if (N <= 0 || kv_heads <= 0 || head_dim <= 0) return;
  kv_cache_write_kernel<Act><<<static_cast<unsigned>(N), kWriteThreads, 0, stream>>>(
      k_cache, v_cache, k, ldk, v, ldv, slots, capacity, kv_heads * head_dim);
  check_launch("kv_cache_write");
}

template <typename Act>
void paged_attention(Act* out, const Act* q, const Act* k_cache, const Act* v_cache,
                     const int32_t* block_tables, const int32_t* query_start,
                     const int32_t* context_len, const float* sinks,
                     const PagedAttentionShape& shape, cudaStream_t stream) {
  if (shape.rows <= 0 || shape.heads <= 0) return;
  static_assert(kPagedMaxHeadSize == 128, "the buckets below stop at 128");
  if (shape.head_dim <= 32) {
    launch_paged<Act, 32>(out, q, k_cache, v_cache, block_tables, query_start, context_len, sinks,
                          shape, stream);
  } else if (shape.head_dim <= 64) {
    launch_paged<Act, 64>(out, q, k_cache, v_cache, block_tables, query_start, context_len, sinks,
                          shape, stream);
  } else {
    launch_paged<Act, 128>(out, q, k_cache, v_cache, block_tables, query_start, context_len,
                           sinks, shape, stream);
  }
}

#define SWITCHYARD_PAGED_INSTANCES(Act)                                                          \
  template void kv_cache_write<Act>(Act*, Act*, const Act*, int64_t, const Act*, int64_t,        \
                                    const int32_t*, int, int64_t, int, int, cudaStream_t);       \
  template void paged_attention<Act>(Act*, const Act*, const Act*, const Act*, const int32_t*,   \
                                     const int32_t*, const int32_t*, const float*,               \
                                     const PagedAttentionShape&, cudaStream_t);

SWITCHYARD_PAGED_INSTANCES(float)
SWITCHYARD_PAGED_INSTANCES(bf16)

#undef SWITCHYARD_PAGED_INSTANCES

}  // namespace switchyard::backend::cuda
