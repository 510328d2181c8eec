// Causal multi-head self-attention kernels (see attention_kernels.h for the contract).
//
// Forward and backward are flash-style: tiles of queries and keys meet in shared memory, the
// softmax is computed online (running max and sum), and only the per-row log-sum-exp is kept for
// the backward pass, which recomputes the probabilities.
//
// Two implementations, chosen per call on the host:
//   - SIMT kernels (fp32 FMAs), for every case: fp32 activations, any hs from 1 to 128.
//   - Tensor-core kernels (mma.sync, bf16 in, fp32 accumulate) for bf16 activations when hs is a
//     multiple of 16 (forward: up to 128; backward: up to 64, beyond which the per-warp
//     accumulators would not fit in registers) and the tensors are 16-byte aligned.
// Decoding and the backward pass's row dot products are SIMT always (they are memory-bound).
//
// Row mapping shared by the SIMT forward and backward kernels. A row (one query or one key of one
// head, up to kHeadMax dims) belongs to a group of kGroup = kHeadMax / 32 adjacent lanes of a
// warp; each lane keeps 32 of the row's dims in registers, as 8 chunks of 4: chunk c of lane g is
// dims 4 (g + kGroup c) .. 4 (g + kGroup c) + 3. Shared-memory tiles are fp32 [rows][kHeadMax],
// zero past hs, so a lane reads chunk c of a tile row as one float4: the group's lanes read one
// contiguous run (no bank conflicts) and the other groups of the warp read the same addresses (a
// broadcast). A dot product over a row is then 32 FMAs per lane and log2(kGroup) shuffles. Head
// sizes are bucketed to kHeadMax = 32, 64 or 128 so that the register arrays have fixed size.
#include "backend/cuda/attention_kernels.h"

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_helpers.cuh"

namespace switchyard::backend::cuda {

namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
constexpr unsigned kFullWarp = 0xffffffffu;

// Dims of a row that one lane holds (see the row mapping above).
constexpr int kLaneDims = 32;
constexpr int kLaneChunks = kLaneDims / 4;

// Tile sizes. Forward and dQ: a block owns kQueryRows queries and streams keys kKeyTile at a
// time. dK/dV: a block owns kKeyRows keys and streams queries kQueryTile at a time. With
// kHeadMax = 128 each kernel's two fp32 tiles take 32 KiB of shared memory, under the 48 KiB that
// needs no opt-in.
constexpr int kQueryRows = 64;
constexpr int kKeyTile = 32;
constexpr int kKeyRows = 64;
constexpr int kQueryTile = 32;

// Decode: warps per block, and keys each warp scores per step (independent shuffle chains).
constexpr int kDecodeWarps = 8;
constexpr int kDecodeKeysPerStep = 4;

// D = rowsum(dout * out): rows (one warp each) per block.
constexpr int kRowDotWarps = 8;

using device::from_float;  // rounds to nearest even
using device::to_float;

// Sum over the kGroup lanes of a row group. Butterfly (xor) order: every lane gets the same bits,
// so the lanes of a group agree on scores and softmax statistics.
template <int kGroup>
__device__ __forceinline__ float group_sum(float x) {
#pragma unroll
  for (int offset = kGroup / 2; offset > 0; offset /= 2) {
    x += __shfl_xor_sync(kFullWarp, x, offset);
  }
  return x;
}

// This lane's 32 dims of the row at `row` (global memory), as fp32; zero at dims >= hs.
template <int kGroup, typename Act>
__device__ __forceinline__ void load_lane_dims(float (&x)[kLaneDims], const Act* row, int g,
                                               int hs) {
#pragma unroll
  for (int c = 0; c < kLaneChunks; ++c) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int d = 4 * (g + kGroup * c) + e;
      x[4 * c + e] = d < hs ? to_float(row[d]) : 0.0f;
    }
  }
}

// row[d] += scale * x for this lane's dims d < hs (global memory, read-modify-write).
template <int kGroup, typename Act>
__device__ __forceinline__ void add_lane_dims(Act* row, const float (&x)[kLaneDims], float scale,
                                              int g, int hs) {
#pragma unroll
  for (int c = 0; c < kLaneChunks; ++c) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int d = 4 * (g + kGroup * c) + e;
      if (d < hs) row[d] = from_float<Act>(to_float(row[d]) + scale * x[4 * c + e]);
    }
  }
}

// This lane's part of dot(x, tile_row); tile_row is a 16-byte aligned shared-memory tile row.
template <int kGroup>
__device__ __forceinline__ float lane_dot(const float (&x)[kLaneDims], const float* tile_row,
                                          int g) {
  const float4* r = reinterpret_cast<const float4*>(tile_row);
  float acc = 0.0f;
#pragma unroll
  for (int c = 0; c < kLaneChunks; ++c) {
    const float4 y = r[g + kGroup * c];
    acc = fmaf(x[4 * c + 0], y.x, acc);
    acc = fmaf(x[4 * c + 1], y.y, acc);
    acc = fmaf(x[4 * c + 2], y.z, acc);
    acc = fmaf(x[4 * c + 3], y.w, acc);
  }
  return acc;
}

// acc += a * tile_row over this lane's dims.
template <int kGroup>
__device__ __forceinline__ void lane_axpy(float (&acc)[kLaneDims], float a, const float* tile_row,
                                          int g) {
  const float4* r = reinterpret_cast<const float4*>(tile_row);
#pragma unroll
  for (int c = 0; c < kLaneChunks; ++c) {
    const float4 y = r[g + kGroup * c];
    acc[4 * c + 0] = fmaf(a, y.x, acc[4 * c + 0]);
    acc[4 * c + 1] = fmaf(a, y.y, acc[4 * c + 1]);
    acc[4 * c + 2] = fmaf(a, y.z, acc[4 * c + 2]);
    acc[4 * c + 3] = fmaf(a, y.w, acc[4 * c + 3]);
  }
}

// Copies rows row0 .. row0 + kRows - 1 (columns 0 .. hs-1) of a row-major matrix with row stride
// `stride` into the fp32 shared tile [kRows][kHeadMax]; rows >= row_end and columns >= hs become
// zero, so the compute loops need no bounds checks. Consecutive threads take consecutive columns,
// so global reads coalesce along each row.
template <int kRows, int kHeadMax, int kThreads, typename Act>
__device__ __forceinline__ void load_tile(float* tile, const Act* src, size_t stride, int row0,
                                          int row_end, int hs) {
  static_assert((kRows * kHeadMax) % kThreads == 0, "tile must split evenly over the threads");
#pragma unroll 4
  for (int idx = threadIdx.x; idx < kRows * kHeadMax; idx += kThreads) {
    const int r = idx / kHeadMax;
    const int c = idx % kHeadMax;
    const int row = row0 + r;
    tile[idx] = (row < row_end && c < hs) ? to_float(src[static_cast<size_t>(row) * stride + c])
                                          : 0.0f;
  }
}

// ---- forward (SIMT) ----

// The key-value head that query head h reads.
__device__ __forceinline__ int kv_head_of(const AttentionViews& g, int h) {
  return h / (g.heads / g.kv_heads);
}

// The first key a query at position t sees (negative: none cut off).
__device__ __forceinline__ int first_key(const AttentionViews& g, int t) {
  return g.window > 0 ? t - g.window + 1 : 0;
}

// One block per (block of kQueryRows queries, batch, head); blockIdx.x = tile * BH + bh, with the
// query blocks in descending order so that the longest (last) ones start first. kGroup threads per
// query (row mapping above). Each thread keeps its q dims and output accumulator in registers and
// streams the K and V tiles its block's queries can see through shared memory, keeping the
// running max m (log2 units) and sum l; a sink starts them at its logit and 1. Rows past T compute
// as row T-1 (so every value stays finite) and store nothing.
template <typename Act, int kHeadMax>
__global__ void __launch_bounds__(kQueryRows * (kHeadMax / 32))
    attention_forward_kernel(Act* __restrict__ out, float* __restrict__ lse,
                             const Act* __restrict__ q, const Act* __restrict__ k,
                             const Act* __restrict__ v, const float* __restrict__ sinks,
                             AttentionViews g, float scale_log2) {
  constexpr int kGroup = kHeadMax / 32;
  constexpr int kThreads = kQueryRows * kGroup;
  extern __shared__ float4 attention_smem[];
  float* k_tile = reinterpret_cast<float*>(attention_smem);  // [kKeyTile][kHeadMax]
  float* v_tile = k_tile + kKeyTile * kHeadMax;               // [kKeyTile][kHeadMax]

  const int hs = g.head_dim, T = g.seq;
  const int BH = g.batch * g.heads;
  const int bh = blockIdx.x % BH;
  const int b = bh / g.heads;
  const int h = bh % g.heads;
  const int kv = kv_head_of(g, h);
  const int n_query_blocks = (T + kQueryRows - 1) / kQueryRows;
  const int q0 = (n_query_blocks - 1 - static_cast<int>(blockIdx.x / BH)) * kQueryRows;
  const int gl = threadIdx.x % kGroup;
  const int t = q0 + static_cast<int>(threadIdx.x) / kGroup;
  const int t_row = min(t, T - 1);  // the row this thread computes
  const size_t first_row = static_cast<size_t>(b) * T;
  const Act* k_head = k + first_row * g.ldk + static_cast<size_t>(kv) * hs;
  const Act* v_head = v + first_row * g.ldv + static_cast<size_t>(kv) * hs;

  float qd[kLaneDims];
  load_lane_dims<kGroup>(qd, q + (first_row + t_row) * g.ldq + static_cast<size_t>(h) * hs, gl,
                         hs);
  float acc[kLaneDims];
#pragma unroll
  for (int i = 0; i < kLaneDims; ++i) acc[i] = 0.0f;
  const bool sink = sinks != nullptr;
  float m = sink ? sinks[h] * kLog2e : -INFINITY;  // running max of the scaled scores, log2 units
  float l = sink ? 1.0f : 0.0f;                    // running sum of exp2(score - m)

  const int row_first_key = first_key(g, t_row);
  const int key_end = min(q0 + kQueryRows, T);
  for (int k0 = max(0, first_key(g, q0)); k0 < key_end; k0 += kKeyTile) {
    __syncthreads();  // everyone is done with the previous tiles
    load_tile<kKeyTile, kHeadMax, kThreads>(k_tile, k_head, g.ldk, k0, T, hs);
    load_tile<kKeyTile, kHeadMax, kThreads>(v_tile, v_head, g.ldv, k0, T, hs);
    __syncthreads();

    float s[kKeyTile];
    float tile_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kKeyTile; ++j) {
      const float dot = group_sum<kGroup>(lane_dot<kGroup>(qd, k_tile + j * kHeadMax, gl));
      const int key = k0 + j;
      s[j] = key <= t_row && key >= row_first_key ? dot * scale_log2 : -INFINITY;
      tile_max = fmaxf(tile_max, s[j]);
    }
    // Until a row has seen a key or a sink (a window's first tiles can hold none of its keys) its
    // max stays -inf; subtracting 0 instead keeps exp2f from -inf - -inf, and masked keys give
    // exp2f(-inf) = 0. Once the max is finite (from the first tile on without a window) this is
    // the plain online softmax.
    const float m_new = fmaxf(m, tile_max);
    const float m_ref = m_new == -INFINITY ? 0.0f : m_new;
    const float alpha = exp2f(m - m_ref);  // 0 while nothing was seen
    l *= alpha;
#pragma unroll
    for (int i = 0; i < kLaneDims; ++i) acc[i] *= alpha;
#pragma unroll
    for (int j = 0; j < kKeyTile; ++j) {
      const float p = exp2f(s[j] - m_ref);
      l += p;
      lane_axpy<kGroup>(acc, p, v_tile + j * kHeadMax, gl);
    }
    m = m_new;
  }

  if (t < T) {
    Act* o = out + (first_row + t) * g.ldo + static_cast<size_t>(h) * hs;
    const float inv_l = 1.0f / l;
#pragma unroll
    for (int c = 0; c < kLaneChunks; ++c) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int d = 4 * (gl + kGroup * c) + e;
        if (d < hs) o[d] = from_float<Act>(acc[4 * c + e] * inv_l);
      }
    }
    if (gl == 0) lse[static_cast<size_t>(bh) * T + t] = (m + log2f(l)) * kLn2;
  }
}

// ---- tensor-core building blocks ----
//
// Warp-level mma.sync.m16n8k16 (bf16 inputs, fp32 accumulators). Fragment layouts, from the PTX
// ISA ("Matrix Fragments for mma.m16n8k16 with floating point type"), with g = lane / 4 and
// c = lane % 4; each 32-bit register holds two bf16, the lower-numbered element in the low half:
//   A (16 x 16, row-major): reg 0 = A[g][2c, 2c+1],   reg 1 = A[g+8][2c, 2c+1],
//                           reg 2 = A[g][2c+8, 2c+9], reg 3 = A[g+8][2c+8, 2c+9]
//   B (16 x 8, k x n):      reg 0 = B[2c, 2c+1][g],   reg 1 = B[2c+8, 2c+9][g]
//   C (16 x 8, fp32):       c0, c1 = C[g][2c, 2c+1],  c2, c3 = C[g+8][2c, 2c+1]
// So the C fragments of two adjacent n-tiles are, once rounded to bf16, exactly the A fragment of
// the 16 x 16 block they form: probabilities feed the next product without leaving registers.

// d += a b over one m16n8k16 step.
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                          uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two bf16 at p (4-byte aligned shared memory) as one register.
__device__ __forceinline__ uint32_t load_pair(const bf16* p) {
  return *reinterpret_cast<const uint32_t*>(p);
}

// Rounds (lo, hi) to bf16 and packs them, lo in the low half.
__device__ __forceinline__ uint32_t pack_pair(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return static_cast<uint32_t>(__bfloat16_as_ushort(v.x)) |
         (static_cast<uint32_t>(__bfloat16_as_ushort(v.y)) << 16);
}

// Copies rows row0 .. row0 + kRows - 1 (kDim columns) of a bf16 matrix with row stride `stride`
// into shared memory, 16 bytes at a time: as the tile [kRows][kPitch] if `tile` is not null, and
// transposed, tile_t[d][r] in [kDim][kTPitch], if `tile_t` is not null (B operands that run along
// the rows of a row-major matrix, such as V in P V, read the transpose as pairs). Rows >= row_end
// become zero. Every source row must start 16-byte aligned: the host checks the base pointer, and
// strides and column offsets are multiples of 8 elements when hs is a multiple of 16.
template <int kRows, int kDim, int kPitch, int kTPitch, int kThreads>
__device__ __forceinline__ void load_tile_mma(bf16* tile, bf16* tile_t, const bf16* src,
                                              size_t stride, int row0, int row_end) {
  constexpr int kVectors = kDim / 8;
  unsigned short* t = reinterpret_cast<unsigned short*>(tile_t);
#pragma unroll 2
  for (int idx = threadIdx.x; idx < kRows * kVectors; idx += kThreads) {
    const int r = idx / kVectors;
    const int v = idx % kVectors;
    const int row = row0 + r;
    uint4 x = make_uint4(0, 0, 0, 0);
    if (row < row_end) x = *reinterpret_cast<const uint4*>(src + row * stride + v * 8);
    if (tile != nullptr) *reinterpret_cast<uint4*>(tile + r * kPitch + v * 8) = x;
    if (tile_t != nullptr) {
      const uint32_t words[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        t[(v * 8 + 2 * w) * kTPitch + r] = static_cast<unsigned short>(words[w] & 0xffffu);
        t[(v * 8 + 2 * w + 1) * kTPitch + r] = static_cast<unsigned short>(words[w] >> 16);
      }
    }
  }
}

// The A fragments of the 16 rows row0 .. row0 + 15 of a shared tile [*][kPitch] over its first
// kDim columns (one fragment per 16 columns).
template <int kDim, int kPitch>
__device__ __forceinline__ void load_a_fragments(uint32_t (&f)[kDim / 16][4], const bf16* tile,
                                                 int row0, int g, int c) {
#pragma unroll
  for (int ks = 0; ks < kDim / 16; ++ks) {
    const bf16* lo = tile + (row0 + g) * kPitch + ks * 16 + 2 * c;
    const bf16* hi = lo + 8 * kPitch;
    f[ks][0] = load_pair(lo);
    f[ks][1] = load_pair(hi);
    f[ks][2] = load_pair(lo + 8);
    f[ks][3] = load_pair(hi + 8);
  }
}

// acc[n] += A B over 8 n-tiles of 8, where A is given as fragments over kDim columns and B[k][n]
// = tile[n][k] for a shared tile [64][kPitch] (B is the transpose of the tile's rows, so pairs
// along k are contiguous). This is S = Q K^T with tile = K, say.
template <int kDim, int kPitch>
__device__ __forceinline__ void mma_a_times_tile_transposed(float (&acc)[8][4],
                                                            const uint32_t (&a)[kDim / 16][4],
                                                            const bf16* tile, int g, int c) {
#pragma unroll
  for (int n = 0; n < 8; ++n) {
    const bf16* row = tile + (n * 8 + g) * kPitch + 2 * c;  // B[2c..][g] = tile[8n + g][2c..]
#pragma unroll
    for (int ks = 0; ks < kDim / 16; ++ks) {
      mma_16816(acc[n], a[ks], load_pair(row + ks * 16), load_pair(row + ks * 16 + 8));
    }
  }
}

// acc[n] += P B for P the 16 x 64 matrix held as 8 C-fragment n-tiles (rounded to bf16 here) and
// B[k][n] = tile_t[n][k] for a transposed shared tile [kDim][kTPitch] (kDim / 8 n-tiles). This is
// O += P V with tile_t = V^T, say.
template <int kDim, int kTPitch>
__device__ __forceinline__ void mma_fragments_times_tile(float (&acc)[kDim / 8][4],
                                                         const float (&p)[8][4],
                                                         const bf16* tile_t, int g, int c) {
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    // The A fragment of columns 16j .. 16j + 15 is C n-tiles 2j and 2j + 1.
    const uint32_t pf[4] = {pack_pair(p[2 * j][0], p[2 * j][1]),
                            pack_pair(p[2 * j][2], p[2 * j][3]),
                            pack_pair(p[2 * j + 1][0], p[2 * j + 1][1]),
                            pack_pair(p[2 * j + 1][2], p[2 * j + 1][3])};
#pragma unroll
    for (int n = 0; n < kDim / 8; ++n) {
      const bf16* row = tile_t + (n * 8 + g) * kTPitch + j * 16 + 2 * c;
      mma_16816(acc[n], pf, load_pair(row), load_pair(row + 8));
    }
  }
}

// row[2c], row[2c + 1] += scale * (x0, x1) in bf16 (4-byte aligned).
__device__ __forceinline__ void add_pair(bf16* p, float x0, float x1, float scale) {
  __nv_bfloat162* q = reinterpret_cast<__nv_bfloat162*>(p);
  const float2 old = __bfloat1622float2(*q);
  *q = __floats2bfloat162_rn(old.x + scale * x0, old.y + scale * x1);
}

// Rows of the tiles of the tensor-core kernels: queries and keys come 64 at a time, 16 per warp.
constexpr int kMmaTile = 64;
constexpr int kMmaWarps = kMmaTile / 16;
static_assert(kMmaTile == kQueryRows && kMmaTile == kKeyRows,
              "the tensor-core kernels use the grids of the SIMT kernels");

// Shared-memory layout of the tensor-core kernels, in bf16 elements. Rows are padded by 8
// elements (16 bytes) so that the 8 row groups of a fragment load hit different banks.
template <int kHeadDim>
struct MmaSmem {
  static constexpr int kPitch = kHeadDim + 8;   // row-major tiles [64][kPitch]
  static constexpr int kTPitch = kMmaTile + 8;  // transposed tiles [kHeadDim][kTPitch]
  static constexpr int kTile = kMmaTile * kPitch;
  static constexpr int kTTile = kHeadDim * kTPitch;
  // Forward: K (first Q) and V^T.
  static constexpr size_t forward_bytes() { return (kTile + kTTile) * sizeof(bf16); }
  // Backward dK, dV: Q, dO, Q^T, dO^T and two rows of 64 floats.
  static constexpr size_t backward_kv_bytes() {
    return (2 * kTile + 2 * kTTile) * sizeof(bf16) + 2 * kMmaTile * sizeof(float);
  }
  // Backward dQ: K, V and K^T.
  static constexpr size_t backward_q_bytes() { return (2 * kTile + kTTile) * sizeof(bf16); }
};

// ---- forward on tensor cores (bf16, hs a multiple of 16) ----

// The forward pass on tensor cores, for bf16 and hs = kHeadDim (a multiple of 16); the grid of
// attention_forward_kernel, 4 warps per block, warp w owning queries q0 + 16w .. q0 + 16w + 15.
// The Q block is staged through the K tile once and kept as A fragments. Per 64-key tile:
// S = Q K^T (8 n-tiles of 8 keys), scaled and masked, online softmax on the fragments (a row
// lives in the 4 lanes of a quad: 2 shuffles per reduction), then O += P V with P rounded to bf16.
template <int kHeadDim>
__global__ void __launch_bounds__(kMmaWarps * 32)
    attention_forward_mma_kernel(bf16* __restrict__ out, float* __restrict__ lse,
                                 const bf16* __restrict__ qkv, int BH, int T, int C, int NH,
                                 float scale_log2) {
  static_assert(kHeadDim % 16 == 0 && kHeadDim <= kAttentionMaxHeadSize, "head size");
  constexpr int kThreads = kMmaWarps * 32;
  constexpr int kDimTiles = kHeadDim / 8;  // n-tiles of O
  using Smem = MmaSmem<kHeadDim>;
  extern __shared__ float4 attention_smem[];
  bf16* k_tile = reinterpret_cast<bf16*>(attention_smem);  // [64][kPitch]; first holds Q
  bf16* vt_tile = k_tile + Smem::kTile;                     // [kHeadDim][kTPitch]

  const int bh = blockIdx.x % BH;
  const int b = bh / NH;
  const int h = bh % NH;
  const int n_query_blocks = (T + kMmaTile - 1) / kMmaTile;
  const int q0 = (n_query_blocks - 1 - static_cast<int>(blockIdx.x / BH)) * kMmaTile;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;
  const int c = lane % 4;
  const int t_lo = q0 + warp * 16 + g;  // query of c0, c1; c2, c3 hold t_hi = t_lo + 8
  const int t_hi = t_lo + 8;
  const int t_lo_row = min(t_lo, T - 1);  // rows past T compute as row T-1, store nothing
  const int t_hi_row = min(t_hi, T - 1);
  const size_t C3 = 3 * static_cast<size_t>(C);
  const bf16* head = qkv + static_cast<size_t>(b) * T * C3 + static_cast<size_t>(h) * kHeadDim;

  load_tile_mma<kMmaTile, kHeadDim, Smem::kPitch, Smem::kTPitch, kThreads>(k_tile, nullptr, head,
                                                                           C3, q0, T);
  __syncthreads();
  uint32_t qf[kHeadDim / 16][4];
  load_a_fragments<kHeadDim, Smem::kPitch>(qf, k_tile, warp * 16, g, c);

  float o[kDimTiles][4];
#pragma unroll
  for (int n = 0; n < kDimTiles; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m_lo = -INFINITY, m_hi = -INFINITY;  // running row maxima, log2 units
  float l_lo = 0.0f, l_hi = 0.0f;            // this lane's part of the running row sums

  const int key_end = min(q0 + kMmaTile, T);
  for (int k0 = 0; k0 < key_end; k0 += kMmaTile) {
    __syncthreads();  // the Q staging, then the previous tiles, are no longer read
    load_tile_mma<kMmaTile, kHeadDim, Smem::kPitch, Smem::kTPitch, kThreads>(k_tile, nullptr,
                                                                             head + C, C3, k0, T);
    load_tile_mma<kMmaTile, kHeadDim, Smem::kPitch, Smem::kTPitch, kThreads>(
        nullptr, vt_tile, head + 2 * static_cast<size_t>(C), C3, k0, T);
    __syncthreads();

    float s[8][4];
#pragma unroll
    for (int n = 0; n < 8; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
    mma_a_times_tile_transposed<kHeadDim, Smem::kPitch>(s, qf, k_tile, g, c);

    // Scale and mask: s[n][i] is query (i < 2 ? t_lo : t_hi), key k0 + 8n + 2c + (i & 1).
    float max_lo = -INFINITY, max_hi = -INFINITY;
#pragma unroll
    for (int n = 0; n < 8; ++n) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int key = k0 + n * 8 + 2 * c + (i & 1);
        const int row = i < 2 ? t_lo_row : t_hi_row;
        s[n][i] = key <= row ? s[n][i] * scale_log2 : -INFINITY;
      }
      max_lo = fmaxf(max_lo, fmaxf(s[n][0], s[n][1]));
      max_hi = fmaxf(max_hi, fmaxf(s[n][2], s[n][3]));
    }
    max_lo = fmaxf(max_lo, __shfl_xor_sync(kFullWarp, max_lo, 1));
    max_lo = fmaxf(max_lo, __shfl_xor_sync(kFullWarp, max_lo, 2));
    max_hi = fmaxf(max_hi, __shfl_xor_sync(kFullWarp, max_hi, 1));
    max_hi = fmaxf(max_hi, __shfl_xor_sync(kFullWarp, max_hi, 2));
    // Finite: key 0 is in the first tile, held by lane c = 0 of every quad (as in the SIMT path).
    const float m_new_lo = fmaxf(m_lo, max_lo);
    const float m_new_hi = fmaxf(m_hi, max_hi);
    const float alpha_lo = exp2f(m_lo - m_new_lo);  // 0 on the first tile
    const float alpha_hi = exp2f(m_hi - m_new_hi);
    m_lo = m_new_lo;
    m_hi = m_new_hi;
    l_lo *= alpha_lo;
    l_hi *= alpha_hi;
#pragma unroll
    for (int n = 0; n < kDimTiles; ++n) {
      o[n][0] *= alpha_lo;
      o[n][1] *= alpha_lo;
      o[n][2] *= alpha_hi;
      o[n][3] *= alpha_hi;
    }
#pragma unroll
    for (int n = 0; n < 8; ++n) {
      s[n][0] = exp2f(s[n][0] - m_lo);
      s[n][1] = exp2f(s[n][1] - m_lo);
      s[n][2] = exp2f(s[n][2] - m_hi);
      s[n][3] = exp2f(s[n][3] - m_hi);
      l_lo += s[n][0] + s[n][1];
      l_hi += s[n][2] + s[n][3];
    }
    mma_fragments_times_tile<kHeadDim, Smem::kTPitch>(o, s, vt_tile, g, c);
  }

  l_lo += __shfl_xor_sync(kFullWarp, l_lo, 1);
  l_lo += __shfl_xor_sync(kFullWarp, l_lo, 2);
  l_hi += __shfl_xor_sync(kFullWarp, l_hi, 1);
  l_hi += __shfl_xor_sync(kFullWarp, l_hi, 2);
  const float inv_lo = 1.0f / l_lo;
  const float inv_hi = 1.0f / l_hi;
  // o[n][i] is query (i < 2 ? t_lo : t_hi), dim 8n + 2c + (i & 1); pairs are 4-byte aligned.
  if (t_lo < T) {
    bf16* o_row = out + (static_cast<size_t>(b) * T + t_lo) * C + static_cast<size_t>(h) * kHeadDim;
#pragma unroll
    for (int n = 0; n < kDimTiles; ++n) {
      *reinterpret_cast<__nv_bfloat162*>(o_row + n * 8 + 2 * c) =
          __floats2bfloat162_rn(o[n][0] * inv_lo, o[n][1] * inv_lo);
    }
  }
  if (t_hi < T) {
    bf16* o_row = out + (static_cast<size_t>(b) * T + t_hi) * C + static_cast<size_t>(h) * kHeadDim;
#pragma unroll
    for (int n = 0; n < kDimTiles; ++n) {
      *reinterpret_cast<__nv_bfloat162*>(o_row + n * 8 + 2 * c) =
          __floats2bfloat162_rn(o[n][2] * inv_hi, o[n][3] * inv_hi);
    }
  }
  if (c == 0) {
    float* lse_head = lse + static_cast<size_t>(bh) * T;
    if (t_lo < T) lse_head[t_lo] = (m_lo + log2f(l_lo)) * kLn2;
    if (t_hi < T) lse_head[t_hi] = (m_hi + log2f(l_hi)) * kLn2;
  }
}

// ---- backward (SIMT) ----

// row_dot[b,h,t] = sum_i dout[b,t,h*hs+i] * out[b,t,h*hs+i]. One warp per (b, t, h), taken in
// memory order (row = (b*T + t)*H + h) so that neighbouring warps read neighbouring heads.
template <typename Act>
__global__ void __launch_bounds__(kRowDotWarps * 32)
    attention_row_dot_kernel(float* __restrict__ row_dot, const Act* __restrict__ dout,
                             const Act* __restrict__ out, AttentionViews g) {
  const size_t rows = static_cast<size_t>(g.batch) * g.seq * g.heads;
  const size_t row = static_cast<size_t>(blockIdx.x) * kRowDotWarps + threadIdx.x / 32;
  if (row >= rows) return;  // uniform per warp: the shuffles below see whole warps
  const int lane = threadIdx.x % 32;
  const int hs = g.head_dim;
  const int h = static_cast<int>(row % g.heads);
  const size_t bt = row / g.heads;
  const Act* d = dout + bt * g.ld_dout + static_cast<size_t>(h) * hs;
  const Act* o = out + bt * g.ldo + static_cast<size_t>(h) * hs;
  float sum = 0.0f;
  for (int i = lane; i < hs; i += 32) sum += to_float(d[i]) * to_float(o[i]);
  sum = group_sum<32>(sum);
  if (lane == 0) {
    const size_t b = bt / g.seq;
    const size_t t = bt % g.seq;
    row_dot[(b * g.heads + h) * g.seq + t] = sum;
  }
}

// dK and dV for one block of kKeyRows keys of one (batch, key-value head); blockIdx.x = key block
// * (B * kv_heads) + the pair (the first key blocks, which see the most queries, start first).
// kGroup threads per key. Each thread keeps its key's k, v, dk, dv dims in registers and, for each
// query head of the group in turn, streams the queries that can see the block's keys (from its
// first key to a window past its last) through shared memory, kQueryTile at a time, with their
// lse and row_dot:
//   p = exp(s - lse), dv += p dout_i, dk += p (dout_i . v - row_dot_i) q_i   (scale applied last).
// Each key's gradient is summed by one thread in a fixed order: deterministic without atomics.
template <typename Act, int kHeadMax>
__global__ void __launch_bounds__(kKeyRows * (kHeadMax / 32))
    attention_backward_kv_kernel(Act* __restrict__ dk_out, Act* __restrict__ dv_out,
                                 const Act* __restrict__ dout, const Act* __restrict__ q,
                                 const Act* __restrict__ k, const Act* __restrict__ v,
                                 const float* __restrict__ lse, const float* __restrict__ row_dot,
                                 AttentionViews g, float scale, float scale_log2) {
  constexpr int kGroup = kHeadMax / 32;
  constexpr int kThreads = kKeyRows * kGroup;
  extern __shared__ float4 attention_smem[];
  float* q_tile = reinterpret_cast<float*>(attention_smem);  // [kQueryTile][kHeadMax]
  float* do_tile = q_tile + kQueryTile * kHeadMax;            // [kQueryTile][kHeadMax]
  float* lse_tile = do_tile + kQueryTile * kHeadMax;          // [kQueryTile], log2 units
  float* row_dot_tile = lse_tile + kQueryTile;                // [kQueryTile]

  const int hs = g.head_dim, T = g.seq;
  const int BKV = g.batch * g.kv_heads;
  const int pair = blockIdx.x % BKV;
  const int b = pair / g.kv_heads;
  const int kv = pair % g.kv_heads;
  const int group = g.heads / g.kv_heads;
  const int k0 = static_cast<int>(blockIdx.x / BKV) * kKeyRows;
  const int gl = threadIdx.x % kGroup;
  const int j = k0 + static_cast<int>(threadIdx.x) / kGroup;  // this thread's key
  const int j_row = min(j, T - 1);
  const size_t first_row = static_cast<size_t>(b) * T;

  float kd[kLaneDims], vd[kLaneDims], dk[kLaneDims], dv[kLaneDims];
  load_lane_dims<kGroup>(kd, k + (first_row + j_row) * g.ldk + static_cast<size_t>(kv) * hs, gl,
                         hs);
  load_lane_dims<kGroup>(vd, v + (first_row + j_row) * g.ldv + static_cast<size_t>(kv) * hs, gl,
                         hs);
#pragma unroll
  for (int i = 0; i < kLaneDims; ++i) dk[i] = dv[i] = 0.0f;

  // Queries before k0 attend to none of this block's keys, nor do those a window or more past
  // its last key.
  const int q_end = g.window > 0 ? min(T, k0 + kKeyRows - 1 + g.window) : T;
  for (int h = kv * group; h < (kv + 1) * group; ++h) {
    const Act* q_head = q + first_row * g.ldq + static_cast<size_t>(h) * hs;
    const Act* do_head = dout + first_row * g.ld_dout + static_cast<size_t>(h) * hs;
    const float* lse_head = lse + (static_cast<size_t>(b) * g.heads + h) * T;
    const float* row_dot_head = row_dot + (static_cast<size_t>(b) * g.heads + h) * T;
    for (int q0 = k0; q0 < q_end; q0 += kQueryTile) {
      __syncthreads();  // everyone is done with the previous tiles
      load_tile<kQueryTile, kHeadMax, kThreads>(q_tile, q_head, g.ldq, q0, T, hs);
      load_tile<kQueryTile, kHeadMax, kThreads>(do_tile, do_head, g.ld_dout, q0, T, hs);
      for (int r = threadIdx.x; r < kQueryTile; r += kThreads) {
        const int i = q0 + r;
        lse_tile[r] = i < T ? lse_head[i] * kLog2e : 0.0f;
        row_dot_tile[r] = i < T ? row_dot_head[i] : 0.0f;
      }
      __syncthreads();

      const int n = min(kQueryTile, q_end - q0);  // uniform over the block
#pragma unroll 2
      for (int r = 0; r < n; ++r) {
        const float* q_row = q_tile + r * kHeadMax;
        const float* do_row = do_tile + r * kHeadMax;
        const float s = group_sum<kGroup>(lane_dot<kGroup>(kd, q_row, gl));
        const float dp = group_sum<kGroup>(lane_dot<kGroup>(vd, do_row, gl));
        // j < T as well: keys past T are padding (their k and v are row T-1's).
        const int i = q0 + r;
        const bool attends = j <= i && j < T && j >= first_key(g, i);
        const float p = attends ? exp2f(s * scale_log2 - lse_tile[r]) : 0.0f;
        const float ds = p * (dp - row_dot_tile[r]);
        lane_axpy<kGroup>(dv, p, do_row, gl);
        lane_axpy<kGroup>(dk, ds, q_row, gl);
      }
    }
  }

  if (j < T) {
    add_lane_dims<kGroup>(dk_out + (first_row + j) * g.ldk + static_cast<size_t>(kv) * hs, dk,
                          scale, gl, hs);
    add_lane_dims<kGroup>(dv_out + (first_row + j) * g.ldv + static_cast<size_t>(kv) * hs, dv,
                          1.0f, gl, hs);
  }
}

// dQ for one block of kQueryRows queries of one (batch, head); blockIdx.x = tile * BH + bh, query
// blocks in descending order (longest first). kGroup threads per query, holding q, dout and dq
// dims in registers; K and V tiles of the keys the block's queries can see stream through shared
// memory:  p = exp(s - lse), dq += p (dout . v_j - row_dot) k_j   (scale applied last).
template <typename Act, int kHeadMax>
__global__ void __launch_bounds__(kQueryRows * (kHeadMax / 32))
    attention_backward_q_kernel(Act* __restrict__ dq_out, const Act* __restrict__ dout,
                                const Act* __restrict__ q, const Act* __restrict__ k,
                                const Act* __restrict__ v, const float* __restrict__ lse,
                                const float* __restrict__ row_dot, AttentionViews g, float scale,
                                float scale_log2) {
  constexpr int kGroup = kHeadMax / 32;
  constexpr int kThreads = kQueryRows * kGroup;
  extern __shared__ float4 attention_smem[];
  float* k_tile = reinterpret_cast<float*>(attention_smem);  // [kKeyTile][kHeadMax]
  float* v_tile = k_tile + kKeyTile * kHeadMax;               // [kKeyTile][kHeadMax]

  const int hs = g.head_dim, T = g.seq;
  const int BH = g.batch * g.heads;
  const int bh = blockIdx.x % BH;
  const int b = bh / g.heads;
  const int h = bh % g.heads;
  const int kv = kv_head_of(g, h);
  const int n_query_blocks = (T + kQueryRows - 1) / kQueryRows;
  const int q0 = (n_query_blocks - 1 - static_cast<int>(blockIdx.x / BH)) * kQueryRows;
  const int gl = threadIdx.x % kGroup;
  const int t = q0 + static_cast<int>(threadIdx.x) / kGroup;  // this thread's query
  const int t_row = min(t, T - 1);
  const size_t first_row = static_cast<size_t>(b) * T;
  const Act* k_head = k + first_row * g.ldk + static_cast<size_t>(kv) * hs;
  const Act* v_head = v + first_row * g.ldv + static_cast<size_t>(kv) * hs;

  float qd[kLaneDims], d_out[kLaneDims], dq[kLaneDims];
  load_lane_dims<kGroup>(qd, q + (first_row + t_row) * g.ldq + static_cast<size_t>(h) * hs, gl,
                         hs);
  load_lane_dims<kGroup>(d_out,
                         dout + (first_row + t_row) * g.ld_dout + static_cast<size_t>(h) * hs, gl,
                         hs);
#pragma unroll
  for (int i = 0; i < kLaneDims; ++i) dq[i] = 0.0f;
  const float row_lse = lse[static_cast<size_t>(bh) * T + t_row] * kLog2e;
  const float row_d = row_dot[static_cast<size_t>(bh) * T + t_row];
  const int row_first_key = first_key(g, t_row);

  const int key_end = min(q0 + kQueryRows, T);
  for (int k0 = max(0, first_key(g, q0)); k0 < key_end; k0 += kKeyTile) {
    __syncthreads();  // everyone is done with the previous tiles
    load_tile<kKeyTile, kHeadMax, kThreads>(k_tile, k_head, g.ldk, k0, T, hs);
    load_tile<kKeyTile, kHeadMax, kThreads>(v_tile, v_head, g.ldv, k0, T, hs);
    __syncthreads();

    const int n = min(kKeyTile, key_end - k0);  // uniform over the block
#pragma unroll 2
    for (int r = 0; r < n; ++r) {
      const float* k_row = k_tile + r * kHeadMax;
      const float s = group_sum<kGroup>(lane_dot<kGroup>(qd, k_row, gl));
      const float dp = group_sum<kGroup>(lane_dot<kGroup>(d_out, v_tile + r * kHeadMax, gl));
      const int key = k0 + r;
      const bool attends = key <= t_row && key >= row_first_key;
      const float p = attends ? exp2f(s * scale_log2 - row_lse) : 0.0f;
      lane_axpy<kGroup>(dq, p * (dp - row_d), k_row, gl);
    }
  }

  if (t < T) {
    add_lane_dims<kGroup>(dq_out + (first_row + t) * g.ldq + static_cast<size_t>(h) * hs, dq, scale,
                          gl, hs);
  }
}

constexpr int kSinkThreads = 256;

// dsinks[h] += -sum over rows (b, t) of p_sink(b, h, t) * row_dot[b, h, t], with p_sink =
// exp(sinks[h] - lse): a sink's logit gets the softmax's gradient with no value behind it. One
// block per head; threads take rows in strides, then a tree of fp64 sums in shared memory, always
// in the same order.
__global__ void __launch_bounds__(kSinkThreads)
    attention_sinks_backward_kernel(float* __restrict__ dsinks, const float* __restrict__ sinks,
                                    const float* __restrict__ lse,
                                    const float* __restrict__ row_dot, AttentionViews g) {
  __shared__ double sums[kSinkThreads];
  const int h = blockIdx.x;
  const int rows = g.batch * g.seq;
  double sum = 0.0;
  for (int r = threadIdx.x; r < rows; r += kSinkThreads) {
    const size_t at = (static_cast<size_t>(r / g.seq) * g.heads + h) * g.seq + r % g.seq;
    sum += static_cast<double>(expf(sinks[h] - lse[at]) * row_dot[at]);
  }
  sums[threadIdx.x] = sum;
  for (int half = kSinkThreads / 2; half > 0; half /= 2) {
    __syncthreads();
    if (static_cast<int>(threadIdx.x) < half) sums[threadIdx.x] += sums[threadIdx.x + half];
  }
  if (threadIdx.x == 0) dsinks[h] = static_cast<float>(dsinks[h] - sums[0]);
}

// ---- backward on tensor cores (bf16, hs a multiple of 16, at most 64) ----

// attention_backward_kv_kernel on tensor cores: the same grid, 4 warps per block, warp w owning
// keys k0 + 16w .. k0 + 16w + 15 with their k and v rows as A fragments. Per tile of 64 queries
// (Q, dO in shared memory both as they are and transposed): S^T = K Q^T and dP^T = V dO^T
// (16 keys x 64 queries per warp), P^T = exp(S^T - lse), dS^T = P^T (dP^T - row_dot), then
// dV += P^T dO and dK += dS^T Q with P^T and dS^T rounded to bf16. Each key's gradient is summed
// by one warp in a fixed order: deterministic.
template <int kHeadDim>
__global__ void __launch_bounds__(kMmaWarps * 32)
    attention_backward_kv_mma_kernel(bf16* __restrict__ dqkv, const bf16* __restrict__ dout,
                                     const bf16* __restrict__ qkv, const float* __restrict__ lse,
                                     const float* __restrict__ row_dot, int BH, int T, int C,
                                     int NH, float scale, float scale_log2) {
  static_assert(kHeadDim % 16 == 0 && kHeadDim <= 64, "head size");
  constexpr int kThreads = kMmaWarps * 32;
  constexpr int kDimTiles = kHeadDim / 8;
  using Smem = MmaSmem<kHeadDim>;
  extern __shared__ float4 attention_smem[];
  bf16* q_tile = reinterpret_cast<bf16*>(attention_smem);  // [64][kPitch]; first holds K
  bf16* do_tile = q_tile + Smem::kTile;                     // [64][kPitch]; first holds V
  bf16* qt_tile = do_tile + Smem::kTile;                    // [kHeadDim][kTPitch]
  bf16* dot_tile = qt_tile + Smem::kTTile;                  // [kHeadDim][kTPitch]
  float* lse_tile = reinterpret_cast<float*>(dot_tile + Smem::kTTile);  // [64], log2 units
  float* row_dot_tile = lse_tile + kMmaTile;                            // [64]

  const int bh = blockIdx.x % BH;
  const int b = bh / NH;
  const int h = bh % NH;
  const int k0 = static_cast<int>(blockIdx.x / BH) * kMmaTile;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;
  const int c = lane % 4;
  const int key_lo = k0 + warp * 16 + g;  // key of c0, c1; c2, c3 hold key_hi = key_lo + 8
  const int key_hi = key_lo + 8;
  const size_t C3 = 3 * static_cast<size_t>(C);
  const bf16* head = qkv + static_cast<size_t>(b) * T * C3 + static_cast<size_t>(h) * kHeadDim;
  const bf16* do_head = dout + static_cast<size_t>(b) * T * C + static_cast<size_t>(h) * kHeadDim;
  const float* lse_head = lse + static_cast<size_t>(bh) * T;
  const float* row_dot_head = row_dot + static_cast<size_t>(bh) * T;

  load_tile_mma<kMmaTile, kHeadDim, Smem::kPitch, Smem::kTPitch, kThreads>(q_tile, nullptr,
                                                                           head + C, C3, k0, T);
  load_tile_mma<kMmaTile, kHeadDim, Smem::kPitch, Smem::kTPitch, kThreads>(
      do_tile, nullptr, head + 2 * static_cast<size_t>(C), C3, k0, T);
  __syncthreads();
  uint32_t kf[kHeadDim / 16][4], vf[kHeadDim / 16][4];
  load_a_fragments<kHeadDim, Smem::kPitch>(kf, q_tile, warp * 16, g, c);
  load_a_fragments<kHeadDim, Smem::kPitch>(vf, do_tile, warp * 16, g, c);

  float dk[kDimTiles][4], dv[kDimTiles][4];
#pragma unroll
  for (int n = 0; n < kDimTiles; ++n) {
#pragma unroll
    for (int i = 0; i < 4; ++i) dk[n][i] = dv[n][i] = 0.0f;
  }

  // Queries before k0 attend to none of this block's keys.
  for (int q0 = k0; q0 < T; q0 += kMmaTile) {
    __syncthreads();  // the K and V staging, then the previous tiles, are no longer read
    load_tile_mma<kMmaTile, kHeadDim, Smem::kPitch, Smem::kTPitch, kThreads>(q_tile, qt_tile,
                                                                             head, C3, q0, T);
    load_tile_mma<kMmaTile, kHeadDim, Smem::kPitch, Smem::kTPitch, kThreads>(do_tile, dot_tile,
                                                                             do_head, C, q0, T);
    for (int r = threadIdx.x; r < kMmaTile; r += kThreads) {
      const int i = q0 + r;
      lse_tile[r] = i < T ? lse_head[i] * kLog2e : 0.0f;
      row_dot_tile[r] = i < T ? row_dot_head[i] : 0.0f;
    }
    __syncthreads();

    float p[8][4], ds[8][4];
#pragma unroll
    for (int n = 0; n < 8; ++n) {
#pragma unroll
      for (int i = 0; i < 4; ++i) p[n][i] = ds[n][i] = 0.0f;
    }
    mma_a_times_tile_transposed<kHeadDim, Smem::kPitch>(p, kf, q_tile, g, c);    // S^T
    mma_a_times_tile_transposed<kHeadDim, Smem::kPitch>(ds, vf, do_tile, g, c);  // dP^T
    // p[n][i] is key (i < 2 ? key_lo : key_hi), query q0 + 8n + 2c + (i & 1).
#pragma unroll
    for (int n = 0; n < 8; ++n) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int r = n * 8 + 2 * c + (i & 1);
        const int query = q0 + r;
        const int key = i < 2 ? key_lo : key_hi;
        // query < T as well: query rows past T are zero padding with lse 0.
        const bool attends = key <= query && query < T;
        const float prob = attends ? exp2f(p[n][i] * scale_log2 - lse_tile[r]) : 0.0f;
        p[n][i] = prob;
        ds[n][i] = prob * (ds[n][i] - row_dot_tile[r]);
      }
    }
    mma_fragments_times_tile<kHeadDim, Smem::kTPitch>(dv, p, dot_tile, g, c);  // P^T dO
    mma_fragments_times_tile<kHeadDim, Smem::kTPitch>(dk, ds, qt_tile, g, c);  // dS^T Q
  }

  // dk[n][i] is key (i < 2 ? key_lo : key_hi), dim 8n + 2c + (i & 1).
  if (key_lo < T) {
    bf16* row = dqkv + (static_cast<size_t>(b) * T + key_lo) * C3 + C +
                static_cast<size_t>(h) * kHeadDim;
#pragma unroll
    for (int n = 0; n < kDimTiles; ++n) {
      add_pair(row + n * 8 + 2 * c, dk[n][0], dk[n][1], scale);
      add_pair(row + C + n * 8 + 2 * c, dv[n][0], dv[n][1], 1.0f);
    }
  }
  if (key_hi < T) {
    bf16* row = dqkv + (static_cast<size_t>(b) * T + key_hi) * C3 + C +
                static_cast<size_t>(h) * kHeadDim;
#pragma unroll
    for (int n = 0; n < kDimTiles; ++n) {
      add_pair(row + n * 8 + 2 * c, dk[n][2], dk[n][3], scale);
      add_pair(row + C + n * 8 + 2 * c, dv[n][2], dv[n][3], 1.0f);
    }
  }
}

// attention_backward_q_kernel on tensor cores: the same grid, 4 warps per block, warp w owning
// queries q0 + 16w .. q0 + 16w + 15 with their q and dout rows as A fragments. Per tile of 64 keys
// (K and V in shared memory, K also transposed): S = Q K^T, dP = dO V^T, P = exp(S - lse),
// dS = P (dP - row_dot), dQ += dS K with dS rounded to bf16.
template <int kHeadDim>
__global__ void __launch_bounds__(kMmaWarps * 32)
    attention_backward_q_mma_kernel(bf16* __restrict__ dqkv, const bf16* __restrict__ dout,
                                    const bf16* __restrict__ qkv, const float* __restrict__ lse,
                                    const float* __restrict__ row_dot, int BH, int T, int C,
                                    int NH, float scale, float scale_log2) {
  static_assert(kHeadDim % 16 == 0 && kHeadDim <= 64, "head size");
  constexpr int kThreads = kMmaWarps * 32;
  constexpr int kDimTiles = kHeadDim / 8;
  using Smem = MmaSmem<kHeadDim>;
  extern __shared__ float4 attention_smem[];
  bf16* k_tile = reinterpret_cast<bf16*>(attention_smem);  // [64][kPitch]; first holds Q
  bf16* v_tile = k_tile + Smem::kTile;                      // [64][kPitch]; first holds dO
  bf16* kt_tile = v_tile + Smem::kTile;                     // [kHeadDim][kTPitch]

  const int bh = blockIdx.x % BH;
  const int b = bh / NH;
  const int h = bh % NH;
  const int n_query_blocks = (T + kMmaTile - 1) / kMmaTile;
  const int q0 = (n_query_blocks - 1 - static_cast<int>(blockIdx.x / BH)) * kMmaTile;
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;
  const int c = lane % 4;
  const int t_lo = q0 + warp * 16 + g;  // query of c0, c1; c2, c3 hold t_hi = t_lo + 8
  const int t_hi = t_lo + 8;
  const int t_lo_row = min(t_lo, T - 1);  // rows past T compute as row T-1, store nothing
  const int t_hi_row = min(t_hi, T - 1);
  const size_t C3 = 3 * static_cast<size_t>(C);
  const bf16* head = qkv + static_cast<size_t>(b) * T * C3 + static_cast<size_t>(h) * kHeadDim;
  const bf16* do_head = dout + static_cast<size_t>(b) * T * C + static_cast<size_t>(h) * kHeadDim;
  const float lse_lo = lse[static_cast<size_t>(bh) * T + t_lo_row] * kLog2e;
  const float lse_hi = lse[static_cast<size_t>(bh) * T + t_hi_row] * kLog2e;
  const float d_lo = row_dot[static_cast<size_t>(bh) * T + t_lo_row];
  const float d_hi = row_dot[static_cast<size_t>(bh) * T + t_hi_row];

  load_tile_mma<kMmaTile, kHeadDim, Smem::kPitch, Smem::kTPitch, kThreads>(k_tile, nullptr, head,
                                                                           C3, q0, T);
  load_tile_mma<kMmaTile, kHeadDim, Smem::kPitch, Smem::kTPitch, kThreads>(v_tile, nullptr,
                                                                           do_head, C, q0, T);
  __syncthreads();
  uint32_t qf[kHeadDim / 16][4], dof[kHeadDim / 16][4];
  load_a_fragments<kHeadDim, Smem::kPitch>(qf, k_tile, warp * 16, g, c);
  load_a_fragments<kHeadDim, Smem::kPitch>(dof, v_tile, warp * 16, g, c);

  float dq[kDimTiles][4];
#pragma unroll
  for (int n = 0; n < kDimTiles; ++n) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.0f;

  const int key_end = min(q0 + kMmaTile, T);
  for (int k0 = 0; k0 < key_end; k0 += kMmaTile) {
    __syncthreads();  // the Q and dO staging, then the previous tiles, are no longer read
    load_tile_mma<kMmaTile, kHeadDim, Smem::kPitch, Smem::kTPitch, kThreads>(k_tile, kt_tile,
                                                                             head + C, C3, k0, T);
    load_tile_mma<kMmaTile, kHeadDim, Smem::kPitch, Smem::kTPitch, kThreads>(
        v_tile, nullptr, head + 2 * static_cast<size_t>(C), C3, k0, T);
    __syncthreads();

    float s[8][4], ds[8][4];
#pragma unroll
    for (int n = 0; n < 8; ++n) {
#pragma unroll
      for (int i = 0; i < 4; ++i) s[n][i] = ds[n][i] = 0.0f;
    }
    mma_a_times_tile_transposed<kHeadDim, Smem::kPitch>(s, qf, k_tile, g, c);    // S
    mma_a_times_tile_transposed<kHeadDim, Smem::kPitch>(ds, dof, v_tile, g, c);  // dP
    // s[n][i] is query (i < 2 ? t_lo : t_hi), key k0 + 8n + 2c + (i & 1).
#pragma unroll
    for (int n = 0; n < 8; ++n) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int key = k0 + n * 8 + 2 * c + (i & 1);
        const bool lo = i < 2;
        const float prob =
            key <= (lo ? t_lo_row : t_hi_row) ? exp2f(s[n][i] * scale_log2 - (lo ? lse_lo : lse_hi))
                                              : 0.0f;
        ds[n][i] = prob * (ds[n][i] - (lo ? d_lo : d_hi));
      }
    }
    mma_fragments_times_tile<kHeadDim, Smem::kTPitch>(dq, ds, kt_tile, g, c);  // dS K
  }

  // dq[n][i] is query (i < 2 ? t_lo : t_hi), dim 8n + 2c + (i & 1).
  if (t_lo < T) {
    bf16* row = dqkv + (static_cast<size_t>(b) * T + t_lo) * C3 + static_cast<size_t>(h) * kHeadDim;
#pragma unroll
    for (int n = 0; n < kDimTiles; ++n) add_pair(row + n * 8 + 2 * c, dq[n][0], dq[n][1], scale);
  }
  if (t_hi < T) {
    bf16* row = dqkv + (static_cast<size_t>(b) * T + t_hi) * C3 + static_cast<size_t>(h) * kHeadDim;
#pragma unroll
    for (int n = 0; n < kDimTiles; ++n) add_pair(row + n * 8 + 2 * c, dq[n][2], dq[n][3], scale);
  }
}

// ---- decode ----

// One block per (batch, head), blockIdx.x = b * NH + h. The block first stores the new k and v
// rows into the caches; __syncthreads then makes those global writes visible to the whole block.
// Each warp takes keys in runs of kDecodeKeysPerStep (warp w: keys 4w .. 4w+3, then 32 further
// on), lanes splitting the dims (lane + 32 d, coalesced cache reads), with its own running max and
// sum; the warps' partial results are merged through shared memory at the end.
template <typename Act, int kHeadMax>
__global__ void __launch_bounds__(kDecodeWarps * 32)
    attention_decode_kernel(Act* __restrict__ out, const Act* __restrict__ qkv, Act* k_cache,
                            Act* v_cache, int pos, int max_T, int C, int NH, float scale_log2) {
  constexpr int kDims = kHeadMax / 32;  // dims per lane
  constexpr int kThreads = kDecodeWarps * 32;
  constexpr int kKeyStride = kDecodeKeysPerStep * kDecodeWarps;
  extern __shared__ float4 attention_smem[];
  float* part_acc = reinterpret_cast<float*>(attention_smem);  // [kDecodeWarps][kHeadMax]
  float* part_m = part_acc + kDecodeWarps * kHeadMax;           // [kDecodeWarps]
  float* part_l = part_m + kDecodeWarps;                        // [kDecodeWarps]

  const int hs = C / NH;
  const int bh = blockIdx.x;
  const int b = bh / NH;
  const int h = bh % NH;
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;
  const Act* q = qkv + static_cast<size_t>(b) * 3 * C + static_cast<size_t>(h) * hs;
  Act* kc = k_cache + static_cast<size_t>(bh) * max_T * hs;  // [max_T][hs] of this (b, h)
  Act* vc = v_cache + static_cast<size_t>(bh) * max_T * hs;
  const size_t new_row = static_cast<size_t>(pos) * hs;
  for (int i = threadIdx.x; i < hs; i += kThreads) {
    kc[new_row + i] = q[C + i];
    vc[new_row + i] = q[2 * C + i];
  }
  __syncthreads();

  float qr[kDims], acc[kDims];
#pragma unroll
  for (int d = 0; d < kDims; ++d) {
    const int dim = lane + 32 * d;
    qr[d] = dim < hs ? to_float(q[dim]) : 0.0f;
    acc[d] = 0.0f;
  }
  float m = -INFINITY;  // log2 units
  float l = 0.0f;
  // j0 <= pos: each step holds at least one real key, so m is finite after the first step.
  for (int j0 = kDecodeKeysPerStep * warp; j0 <= pos; j0 += kKeyStride) {
    float s[kDecodeKeysPerStep];
#pragma unroll
    for (int u = 0; u < kDecodeKeysPerStep; ++u) {
      const int j = j0 + u;
      float dot = 0.0f;
      if (j <= pos) {
#pragma unroll
        for (int d = 0; d < kDims; ++d) {
          const int dim = lane + 32 * d;
          if (dim < hs) dot = fmaf(qr[d], to_float(kc[static_cast<size_t>(j) * hs + dim]), dot);
        }
      }
      s[u] = dot;
    }
    float step_max = -INFINITY;
#pragma unroll
    for (int u = 0; u < kDecodeKeysPerStep; ++u) {
      s[u] = group_sum<32>(s[u]);
      s[u] = j0 + u <= pos ? s[u] * scale_log2 : -INFINITY;
      step_max = fmaxf(step_max, s[u]);
    }
    const float m_new = fmaxf(m, step_max);
    const float alpha = exp2f(m - m_new);  // 0 on the first step
    l *= alpha;
#pragma unroll
    for (int d = 0; d < kDims; ++d) acc[d] *= alpha;
#pragma unroll
    for (int u = 0; u < kDecodeKeysPerStep; ++u) {
      const int j = j0 + u;
      const float p = exp2f(s[u] - m_new);  // 0 for keys past pos
      l += p;
      if (j <= pos) {
#pragma unroll
        for (int d = 0; d < kDims; ++d) {
          const int dim = lane + 32 * d;
          if (dim < hs) acc[d] = fmaf(p, to_float(vc[static_cast<size_t>(j) * hs + dim]), acc[d]);
        }
      }
    }
    m = m_new;
  }

  if (lane == 0) {
    part_m[warp] = m;
    part_l[warp] = l;
  }
#pragma unroll
  for (int d = 0; d < kDims; ++d) part_acc[warp * kHeadMax + lane + 32 * d] = acc[d];
  __syncthreads();

  // Merge: warps that had no keys have m = -inf and weight exp2f(-inf) = 0; warp 0 always has
  // key 0, so the overall max is finite.
  float m_all = -INFINITY;
#pragma unroll
  for (int w = 0; w < kDecodeWarps; ++w) m_all = fmaxf(m_all, part_m[w]);
  float l_all = 0.0f;
  float weight[kDecodeWarps];
#pragma unroll
  for (int w = 0; w < kDecodeWarps; ++w) {
    weight[w] = exp2f(part_m[w] - m_all);
    l_all += weight[w] * part_l[w];
  }
  const float inv_l = 1.0f / l_all;
  Act* o = out + static_cast<size_t>(b) * C + static_cast<size_t>(h) * hs;
  for (int i = threadIdx.x; i < hs; i += kThreads) {
    float sum = 0.0f;
#pragma unroll
    for (int w = 0; w < kDecodeWarps; ++w) sum += weight[w] * part_acc[w * kHeadMax + i];
    o[i] = from_float<Act>(sum * inv_l);
  }
}

// ---- launches ----

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// The head-size bucket's kHeadMax (32, 64 or 128) for hs in 1 .. kAttentionMaxHeadSize.
template <typename F>
void with_head_bucket(int hs, F&& f) {
  static_assert(kAttentionMaxHeadSize == 128, "buckets below stop at 128");
  if (hs <= 32) {
    f.template operator()<32>();
  } else if (hs <= 64) {
    f.template operator()<64>();
  } else {
    f.template operator()<128>();
  }
}

// Calls f.template operator()<hs>() when hs is a multiple of 16 in kFirst .. kLast (the head sizes
// the tensor-core kernels are built for) and returns true; otherwise calls nothing, returns false.
template <int kFirst, int kLast, typename F>
bool with_mma_head_size(int hs, F&& f) {
  if (hs == kFirst) {
    f.template operator()<kFirst>();
    return true;
  }
  if constexpr (kFirst + 16 <= kLast) {
    return with_mma_head_size<kFirst + 16, kLast>(hs, f);
  } else {
    return false;
  }
}

// The tensor-core kernels read rows 16 bytes at a time and write pairs: the tensors they touch
// must start 16-byte aligned (allocate() gives 64; views into the middle of a buffer may not).
bool aligned_16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// log2(e) / sqrt(hs): scores in log2 units, so that the softmax uses exp2f.
float scale_log2_for(int hs) { return kLog2e / std::sqrt(static_cast<float>(hs)); }

// GPT-2's packed projection qkv[B,T,3C] and out[B,T,C] as views for the SIMT kernels.
AttentionViews packed_views(int B, int T, int C, int NH) {
  AttentionViews g;
  g.batch = B;
  g.seq = T;
  g.heads = g.kv_heads = NH;
  g.head_dim = C / NH;
  g.ldq = g.ldk = g.ldv = 3 * static_cast<int64_t>(C);
  g.ldo = g.ld_dout = C;
  g.scale = 1.0f / std::sqrt(static_cast<float>(C / NH));
  return g;
}

template <typename Act>
void forward_simt(Act* out, float* lse, const Act* q, const Act* k, const Act* v,
                  const float* sinks, const AttentionViews& g, float scale_log2,
                  cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(ceil_div(g.seq, kQueryRows)) * g.batch * g.heads;
  with_head_bucket(g.head_dim, [&]<int kHeadMax>() {
    const size_t smem = 2 * kKeyTile * kHeadMax * sizeof(float);
    attention_forward_kernel<Act, kHeadMax><<<blocks, kQueryRows * (kHeadMax / 32), smem, stream>>>(
        out, lse, q, k, v, sinks, g, scale_log2);
    check_launch("attention_forward");
  });
}

// D = rowsum(dout * out) into row_dot, then the SIMT dK/dV and dQ kernels.
template <typename Act>
void backward_simt(Act* dq, Act* dk, Act* dv, float* row_dot, const Act* dout, const Act* q,
                   const Act* k, const Act* v, const float* lse, const AttentionViews& g,
                   float scale, float scale_log2, cudaStream_t stream) {
  const unsigned kv_blocks =
      static_cast<unsigned>(ceil_div(g.seq, kKeyRows)) * g.batch * g.kv_heads;
  const unsigned q_blocks = static_cast<unsigned>(ceil_div(g.seq, kQueryRows)) * g.batch * g.heads;
  with_head_bucket(g.head_dim, [&]<int kHeadMax>() {
    constexpr int kGroup = kHeadMax / 32;
    const size_t kv_smem = (2 * kQueryTile * kHeadMax + 2 * kQueryTile) * sizeof(float);
    attention_backward_kv_kernel<Act, kHeadMax><<<kv_blocks, kKeyRows * kGroup, kv_smem, stream>>>(
        dk, dv, dout, q, k, v, lse, row_dot, g, scale, scale_log2);
    check_launch("attention_backward_kv");

    const size_t q_smem = 2 * kKeyTile * kHeadMax * sizeof(float);
    attention_backward_q_kernel<Act, kHeadMax><<<q_blocks, kQueryRows * kGroup, q_smem, stream>>>(
        dq, dout, q, k, v, lse, row_dot, g, scale, scale_log2);
    check_launch("attention_backward_q");
  });
}

template <typename Act>
void row_dots(float* row_dot, const Act* dout, const Act* out, const AttentionViews& g,
              cudaStream_t stream) {
  const size_t rows = static_cast<size_t>(g.batch) * g.seq * g.heads;
  const unsigned blocks = static_cast<unsigned>((rows + kRowDotWarps - 1) / kRowDotWarps);
  attention_row_dot_kernel<Act><<<blocks, kRowDotWarps * 32, 0, stream>>>(row_dot, dout, out, g);
  check_launch("attention_row_dot");
}

}  // namespace

template <typename Act>
void attention_forward(Act* out, float* lse, const Act* qkv, int B, int T, int C, int NH,
                       cudaStream_t stream) {
  if (B <= 0 || T <= 0 || NH <= 0) return;
  const int hs = C / NH;
  const int BH = B * NH;
  const unsigned blocks = static_cast<unsigned>(ceil_div(T, kQueryRows)) * BH;
  if constexpr (std::is_same_v<Act, bf16>) {
    if (aligned_16(out) && aligned_16(qkv) &&
        with_mma_head_size<16, kAttentionMaxHeadSize>(hs, [&]<int kHeadDim>() {
          attention_forward_mma_kernel<kHeadDim>
              <<<blocks, kMmaWarps * 32, MmaSmem<kHeadDim>::forward_bytes(), stream>>>(
                  out, lse, qkv, BH, T, C, NH, scale_log2_for(hs));
          check_launch("attention_forward_mma");
        })) {
      return;
    }
  }
  forward_simt(out, lse, qkv, qkv + C, qkv + 2 * static_cast<size_t>(C),
               static_cast<const float*>(nullptr), packed_views(B, T, C, NH), scale_log2_for(hs),
               stream);
}

template <typename Act>
void attention_forward(Act* out, float* lse, const Act* q, const Act* k, const Act* v,
                       const float* sinks, const AttentionViews& views, cudaStream_t stream) {
  if (views.batch <= 0 || views.seq <= 0 || views.heads <= 0) return;
  forward_simt(out, lse, q, k, v, sinks, views, views.scale * kLog2e, stream);
}

size_t attention_backward_workspace_bytes(int B, int T, int NH) {
  return static_cast<size_t>(B) * NH * T * sizeof(float);
}

template <typename Act>
void attention_backward(Act* dqkv, void* workspace, const Act* dout, const Act* out,
                        const Act* qkv, const float* lse, int B, int T, int C, int NH,
                        cudaStream_t stream) {
  if (B <= 0 || T <= 0 || NH <= 0) return;
  const int hs = C / NH;
  const int BH = B * NH;
  const AttentionViews g = packed_views(B, T, C, NH);
  float* row_dot = static_cast<float*>(workspace);
  row_dots(row_dot, dout, out, g, stream);

  const float scale = 1.0f / std::sqrt(static_cast<float>(hs));
  const float scale_log2 = scale_log2_for(hs);
  const unsigned kv_blocks = static_cast<unsigned>(ceil_div(T, kKeyRows)) * BH;
  const unsigned q_blocks = static_cast<unsigned>(ceil_div(T, kQueryRows)) * BH;
  // The dK/dV and dQ kernels write disjoint parts of dqkv (k and v columns; q columns), so their
  // order does not matter; the stream runs them one after the other anyway.
  if constexpr (std::is_same_v<Act, bf16>) {
    if (aligned_16(dqkv) && aligned_16(dout) && aligned_16(qkv) &&
        with_mma_head_size<16, 64>(hs, [&]<int kHeadDim>() {
          using Smem = MmaSmem<kHeadDim>;
          attention_backward_kv_mma_kernel<kHeadDim>
              <<<kv_blocks, kMmaWarps * 32, Smem::backward_kv_bytes(), stream>>>(
                  dqkv, dout, qkv, lse, row_dot, BH, T, C, NH, scale, scale_log2);
          check_launch("attention_backward_kv_mma");
          attention_backward_q_mma_kernel<kHeadDim>
              <<<q_blocks, kMmaWarps * 32, Smem::backward_q_bytes(), stream>>>(
                  dqkv, dout, qkv, lse, row_dot, BH, T, C, NH, scale, scale_log2);
          check_launch("attention_backward_q_mma");
        })) {
      return;
    }
  }
  const size_t c = static_cast<size_t>(C);
  backward_simt(dqkv, dqkv + c, dqkv + 2 * c, row_dot, dout, qkv, qkv + c, qkv + 2 * c, lse, g,
                scale, scale_log2, stream);
}

template <typename Act>
void attention_backward(Act* dq, Act* dk, Act* dv, float* dsinks, void* workspace,
                        const Act* dout, const Act* out, const Act* q, const Act* k, const Act* v,
                        const float* sinks, const float* lse, const AttentionViews& views,
                        cudaStream_t stream) {
  if (views.batch <= 0 || views.seq <= 0 || views.heads <= 0) return;
  float* row_dot = static_cast<float*>(workspace);
  row_dots(row_dot, dout, out, views, stream);
  backward_simt(dq, dk, dv, row_dot, dout, q, k, v, lse, views, views.scale,
                views.scale * kLog2e, stream);
  if (sinks != nullptr && dsinks != nullptr) {
    attention_sinks_backward_kernel<<<views.heads, kSinkThreads, 0, stream>>>(dsinks, sinks, lse,
                                                                              row_dot, views);
    check_launch("attention_backward (sinks)");
  }
}

template <typename Act>
void attention_decode(Act* out, const Act* qkv, Act* k_cache, Act* v_cache, int B, int pos,
                      int max_T, int C, int NH, cudaStream_t stream) {
  if (B <= 0 || NH <= 0) return;
  const int hs = C / NH;
  with_head_bucket(hs, [&]<int kHeadMax>() {
    const unsigned blocks = static_cast<unsigned>(B) * NH;
    const size_t smem = (kDecodeWarps * kHeadMax + 2 * kDecodeWarps) * sizeof(float);
    attention_decode_kernel<Act, kHeadMax><<<blocks, kDecodeWarps * 32, smem, stream>>>(
        out, qkv, k_cache, v_cache, pos, max_T, C, NH, scale_log2_for(hs));
    check_launch("attention_decode");
  });
}

#define SWITCHYARD_ATTENTION_INSTANCES(Act)                                                       \
  template void attention_forward<Act>(Act*, float*, const Act*, int, int, int, int,             \
                                       cudaStream_t);                                            \
  template void attention_forward<Act>(Act*, float*, const Act*, const Act*, const Act*,         \
                                       const float*, const AttentionViews&, cudaStream_t);       \
  template void attention_backward<Act>(Act*, void*, const Act*, const Act*, const Act*,         \
                                        const float*, int, int, int, int, cudaStream_t);         \
  template void attention_backward<Act>(Act*, Act*, Act*, float*, void*, const Act*, const Act*, \
                                        const Act*, const Act*, const Act*, const float*,        \
                                        const float*, const AttentionViews&, cudaStream_t);      \
  template void attention_decode<Act>(Act*, const Act*, Act*, Act*, int, int, int, int, int,     \
                                      cudaStream_t);

SWITCHYARD_ATTENTION_INSTANCES(float)
SWITCHYARD_ATTENTION_INSTANCES(bf16)

#undef SWITCHYARD_ATTENTION_INSTANCES

}  // namespace switchyard::backend::cuda
