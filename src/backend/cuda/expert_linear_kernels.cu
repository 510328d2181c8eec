// The grouped expert products (see expert_linear_kernels.h).
//
// One kernel computes out[g, n] (+)= sum_k a[g, k] w_e[k, n] over the rows g of one expert e at a
// time: the forward pass (a = inp, w_e = weight[e]^T, K = C, n over OC) and the input gradient
// (a = dout, w_e = weight[e], K = OC, n over C). A block owns a tile of kTile outputs (blockIdx.x)
// and, in turn, the tiles of grouped rows numbered blockIdx.y, blockIdx.y + gridDim.y, ...: the
// experts' rows split into tiles of kTile rows, expert by expert, so a tile never mixes experts.
// The host does not know the experts' row counts (they are on the device), so it launches as
// many tiles as there can be, ceil(A / kTile) + E, and blocks past the last tile do nothing.
#include "backend/cuda/expert_linear_kernels.h"

#include <algorithm>
#include <cstddef>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_helpers.cuh"

namespace switchyard::backend::cuda {
namespace {

using device::from_float;
using device::to_float;

constexpr int kTile = 64;          // rows and outputs of a block's tile
constexpr int kDepth = 32;         // the slice of the reduction staged per step: one MXFP4 block
constexpr int kSide = 16;          // 16 x 16 threads ...
constexpr int kSub = kTile / kSide;  // ... each owning 4 x 4 outputs, kSide apart
constexpr int kThreads = kSide * kSide;
constexpr int kPitch = kTile + 1;  // shared rows padded against bank conflicts
constexpr unsigned kMaxGridY = 65535;

using Tile = float[kDepth][kPitch];

// Expert e's rows [first, end), with its offsets clamped into [0, A].
struct ExpertRange {
  int first, end;
};

__device__ __forceinline__ ExpertRange expert_range(const int32_t* offsets, int e, int A) {
  const int first = min(max(offsets[e], 0), A);
  const int end = min(max(offsets[e + 1], first), A);
  return {first, end};
}

// The expert and rows of grouped tile `t`, or false when there are fewer tiles. Every thread of a
// block works it out (the same answer), so no barrier is needed.
__device__ __forceinline__ bool find_tile(const int32_t* offsets, int E, int A, int t, int& expert,
                                          ExpertRange& rows) {
  for (int e = 0; e < E; ++e) {
    const ExpertRange r = expert_range(offsets, e, A);
    const int tiles = (r.end - r.first + kTile - 1) / kTile;
    if (t < tiles) {
      expert = e;
      rows = {r.first + t * kTile, min(r.end, r.first + (t + 1) * kTile)};
      return true;
    }
    t -= tiles;
  }
  return false;
}

// ---- weight decoding into a shared tile w[k][n] ----

// The 16 E2M1 values by code (sign in bit 3): 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives.
__device__ __forceinline__ float e2m1_value(unsigned code) {
  const unsigned exponent = (code >> 1) & 3u, mantissa = code & 1u;
  const float magnitude = exponent == 0 ? 0.5f * static_cast<float>(mantissa)
                                        : (1.0f + 0.5f * static_cast<float>(mantissa)) *
                                              static_cast<float>(1u << (exponent - 1));
  return (code & 8u) ? -magnitude : magnitude;
}

// An E8M0 scale byte as the fp32 it stands for: 2^(bits - 127) is the fp32 exponent field for
// bits 1..254; 0 is 2^-127 (the subnormal 0x00400000); 255 is NaN (core's e8m0_to_float).
__device__ __forceinline__ float e8m0_value(unsigned bits) {
  return __uint_as_float(bits == 0 ? 0x00400000u : bits == 255 ? 0x7FC00000u : bits << 23);
}

// weight[e] read transposed, for the forward product: w[k][n] = weight[e][n0 + n][k0 + k], zero
// outside [rows, cols). Consecutive threads take consecutive k: reads run along a weight row.
template <typename W>
struct TransposedRows {
  const W* data;
  int rows, cols;  // OC, C

  __device__ __forceinline__ void load(Tile& w, int e, int k0, int n0) const {
    const W* base = data + static_cast<size_t>(e) * rows * cols;
    for (int idx = threadIdx.x; idx < kTile * kDepth; idx += kThreads) {
      const int n = idx / kDepth, k = idx % kDepth;
      const int o = n0 + n, c = k0 + k;
      w[k][n] = o < rows && c < cols ? to_float(base[static_cast<size_t>(o) * cols + c]) : 0.0f;
    }
  }
};

// MXFP4 weight[e] read transposed: thread t decodes bytes 4 (t % 4) .. + 3 of output n0 + t / 4's
// block at k0 (kDepth = 32 values: the whole block), each value its E2M1 code times the block's
// scale, exactly as the CPU decodes it. cols is a multiple of 32, so the block is whole.
struct TransposedMxfp4Rows {
  const uint8_t* codes;
  const uint8_t* scales;
  int rows, cols;

  __device__ __forceinline__ void load(Tile& w, int e, int k0, int n0) const {
    static_assert(kThreads == 4 * kTile && kDepth == 32, "one thread per 8 values of a block");
    const int n = threadIdx.x / 4, quarter = threadIdx.x % 4;
    const int o = n0 + n;
    if (o >= rows) {
#pragma unroll
      for (int i = 0; i < 8; ++i) w[8 * quarter + i][n] = 0.0f;
      return;
    }
    const size_t row = static_cast<size_t>(e) * rows + o;
    const float scale = e8m0_value(scales[row * (cols / 32) + k0 / 32]);
    const uint8_t* bytes = codes + row * (cols / 2) + k0 / 2 + 4 * quarter;
#pragma unroll
    for (int b = 0; b < 4; ++b) {
      const unsigned byte = bytes[b];
      w[8 * quarter + 2 * b][n] = e2m1_value(byte & 15u) * scale;
      w[8 * quarter + 2 * b + 1][n] = e2m1_value(byte >> 4) * scale;
    }
  }
};

// weight[e] as it is, for the input gradient: w[k][n] = weight[e][k0 + k][n0 + n]. Consecutive
// threads take consecutive n: reads run along a weight row.
template <typename W>
struct Rows {
  const W* data;
  int rows, cols;  // OC, C

  __device__ __forceinline__ void load(Tile& w, int e, int k0, int n0) const {
    const W* base = data + static_cast<size_t>(e) * rows * cols;
    for (int idx = threadIdx.x; idx < kTile * kDepth; idx += kThreads) {
      const int k = idx / kTile, n = idx % kTile;
      const int o = k0 + k, c = n0 + n;
      w[k][n] = o < rows && c < cols ? to_float(base[static_cast<size_t>(o) * cols + c]) : 0.0f;
    }
  }
};

// ---- the grouped product ----

// out[g, n] = sum_k a[g, k] w_e[k, n] (+ bias[e, n]) for n < N and the rows g of each expert e;
// with kAccumulate, added to what out holds. a is [A, K], out [A, N]. Each output is one thread's
// fp32 FMA chain over k in ascending order (zeros pad the last slice, adding nothing).
template <typename Act, typename Weights, bool kAccumulate>
__global__ void __launch_bounds__(kThreads)
    grouped_product_kernel(Act* out, const Act* a, Weights weights, const float* bias,
                           const int32_t* offsets, int A, int E, int K, int N, int tiles) {
  __shared__ Tile a_tile;  // a_tile[k][m] = a[row0 + m, k0 + k]
  __shared__ Tile w_tile;
  const int n0 = blockIdx.x * kTile;
  const int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
  for (int t = blockIdx.y; t < tiles; t += gridDim.y) {
    int e = 0;
    ExpertRange rows{0, 0};
    if (!find_tile(offsets, E, A, t, e, rows)) break;  // uniform over the block
    float acc[kSub][kSub] = {};
    for (int k0 = 0; k0 < K; k0 += kDepth) {
      __syncthreads();  // everyone is done with the previous slices
      for (int idx = threadIdx.x; idx < kTile * kDepth; idx += kThreads) {
        const int m = idx / kDepth, k = idx % kDepth;
        const int g = rows.first + m, c = k0 + k;
        a_tile[k][m] = g < rows.end && c < K ? to_float(a[static_cast<size_t>(g) * K + c]) : 0.0f;
      }
      weights.load(w_tile, e, k0, n0);
      __syncthreads();
#pragma unroll 4
      for (int k = 0; k < kDepth; ++k) {
        float av[kSub], wv[kSub];
#pragma unroll
        for (int i = 0; i < kSub; ++i) {
          av[i] = a_tile[k][ty + kSide * i];
          wv[i] = w_tile[k][tx + kSide * i];
        }
#pragma unroll
        for (int i = 0; i < kSub; ++i) {
#pragma unroll
          for (int j = 0; j < kSub; ++j) acc[i][j] = fmaf(av[i], wv[j], acc[i][j]);
        }
      }
    }
#pragma unroll
    for (int i = 0; i < kSub; ++i) {
      const int g = rows.first + ty + kSide * i;
      if (g >= rows.end) continue;
#pragma unroll
      for (int j = 0; j < kSub; ++j) {
        const int n = n0 + tx + kSide * j;
        if (n >= N) continue;
        Act* o = out + static_cast<size_t>(g) * N + n;
        float value = acc[i][j];
        if (bias != nullptr) value += bias[static_cast<size_t>(e) * N + n];
        if constexpr (kAccumulate) value += to_float(*o);
        *o = from_float<Act>(value);
      }
    }
    __syncthreads();  // the next tile's first slice overwrites the tiles
  }
}

// dweight[e][o][c] += sum over expert e's rows g of dout[g, o] inp[g, c]: blockIdx.z = e, a tile of
// kTile outputs (y) by kTile inputs (x), the rows streamed kDepth at a time, in order.
template <typename Act>
__global__ void __launch_bounds__(kThreads)
    expert_dweight_kernel(float* dweight, const Act* dout, const Act* inp, const int32_t* offsets,
                          int A, int C, int OC) {
  __shared__ Tile d_tile;  // d_tile[k][m] = dout[g0 + k, o0 + m]
  __shared__ Tile x_tile;  // x_tile[k][n] = inp[g0 + k, c0 + n]
  const int e = blockIdx.z;
  const int o0 = blockIdx.y * kTile, c0 = blockIdx.x * kTile;
  const ExpertRange rows = expert_range(offsets, e, A);
  if (rows.first == rows.end) return;  // no rows, no gradient (the whole block leaves)
  const int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
  float acc[kSub][kSub] = {};
  for (int g0 = rows.first; g0 < rows.end; g0 += kDepth) {
    __syncthreads();
    for (int idx = threadIdx.x; idx < kTile * kDepth; idx += kThreads) {
      const int k = idx / kTile, m = idx % kTile;
      const int g = g0 + k;
      const bool row = g < rows.end;
      const size_t at = static_cast<size_t>(g);
      d_tile[k][m] = row && o0 + m < OC ? to_float(dout[at * OC + o0 + m]) : 0.0f;
      x_tile[k][m] = row && c0 + m < C ? to_float(inp[at * C + c0 + m]) : 0.0f;
    }
    __syncthreads();
#pragma unroll 4
    for (int k = 0; k < kDepth; ++k) {
      float dv[kSub], xv[kSub];
#pragma unroll
      for (int i = 0; i < kSub; ++i) {
        dv[i] = d_tile[k][ty + kSide * i];
        xv[i] = x_tile[k][tx + kSide * i];
      }
#pragma unroll
      for (int i = 0; i < kSub; ++i) {
#pragma unroll
        for (int j = 0; j < kSub; ++j) acc[i][j] = fmaf(dv[i], xv[j], acc[i][j]);
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kSub; ++i) {
    const int o = o0 + ty + kSide * i;
    if (o >= OC) continue;
#pragma unroll
    for (int j = 0; j < kSub; ++j) {
      const int c = c0 + tx + kSide * j;
      if (c < C) dweight[(static_cast<size_t>(e) * OC + o) * C + c] += acc[i][j];
    }
  }
}

constexpr int kBiasThreads = 256;

// dbias[e][o] += sum over expert e's rows of dout[g, o], one thread per (e, o), rows in order.
template <typename Act>
__global__ void __launch_bounds__(kBiasThreads)
    expert_dbias_kernel(float* dbias, const Act* dout, const int32_t* offsets, int A, int OC) {
  const int e = blockIdx.y;
  const int o = blockIdx.x * kBiasThreads + threadIdx.x;
  if (o >= OC) return;
  const ExpertRange rows = expert_range(offsets, e, A);
  if (rows.first == rows.end) return;
  float sum = 0.0f;
  for (int g = rows.first; g < rows.end; ++g) {
    sum += to_float(dout[static_cast<size_t>(g) * OC + o]);
  }
  dbias[static_cast<size_t>(e) * OC + o] += sum;
}

unsigned blocks_for(int n) { return static_cast<unsigned>((n + kTile - 1) / kTile); }

// Every (expert, row tile) pair there can be: sum_e ceil(rows_e / kTile) <= ceil(A / kTile) + E.
int tile_bound(int A, int E) { return (A + kTile - 1) / kTile + E; }

template <typename Act, bool kAccumulate, typename Weights>
void launch_product(const char* name, Act* out, const Act* a, const Weights& weights,
                    const float* bias, const int32_t* offsets, int A, int E, int K, int N,
                    cudaStream_t stream) {
  const int tiles = tile_bound(A, E);
  const dim3 grid(blocks_for(N), std::min<unsigned>(static_cast<unsigned>(tiles), kMaxGridY));
  grouped_product_kernel<Act, Weights, kAccumulate><<<grid, kThreads, 0, stream>>>(
      out, a, weights, bias, offsets, A, E, K, N, tiles);
  check_launch(name);
}

}  // namespace

template <typename Act>
void expert_linear_forward(Act* out, const Act* inp, const ExpertWeights& weight,
                           const float* bias, const int32_t* offsets, int A, int E, int C, int OC,
                           cudaStream_t stream) {
  if (A <= 0 || E <= 0 || OC <= 0) return;
  const char* name = "expert_linear_forward";
  switch (weight.format) {
    case WeightFormat::kF32:
      launch_product<Act, false>(
          name, out, inp, TransposedRows<float>{static_cast<const float*>(weight.data), OC, C},
          bias, offsets, A, E, C, OC, stream);
      break;
    case WeightFormat::kBF16:
      launch_product<Act, false>(
          name, out, inp, TransposedRows<bf16>{static_cast<const bf16*>(weight.data), OC, C}, bias,
          offsets, A, E, C, OC, stream);
      break;
    case WeightFormat::kMXFP4:
      launch_product<Act, false>(
          name, out, inp,
          TransposedMxfp4Rows{static_cast<const uint8_t*>(weight.data), weight.scales, OC, C},
          bias, offsets, A, E, C, OC, stream);
      break;
  }
}

template <typename Act>
void expert_linear_backward(Act* dinp, float* dweight, float* dbias, const Act* dout,
                            const Act* inp, const ExpertWeights& weight, const int32_t* offsets,
                            int A, int E, int C, int OC, cudaStream_t stream) {
  if (A <= 0 || E <= 0 || OC <= 0 || C <= 0) return;
  if (dinp != nullptr) {
    const char* name = "expert_linear_backward (dinp)";
    if (weight.format == WeightFormat::kBF16) {
      launch_product<Act, true>(name, dinp, dout,
                                Rows<bf16>{static_cast<const bf16*>(weight.data), OC, C}, nullptr,
                                offsets, A, E, OC, C, stream);
    } else {
      launch_product<Act, true>(name, dinp, dout,
                                Rows<float>{static_cast<const float*>(weight.data), OC, C},
                                nullptr, offsets, A, E, OC, C, stream);
    }
  }
  expert_dweight_kernel<Act><<<dim3(blocks_for(C), blocks_for(OC), E), kThreads, 0, stream>>>(
      dweight, dout, inp, offsets, A, C, OC);
  check_launch("expert_linear_backward (dweight)");
  if (dbias != nullptr) {
    const dim3 grid((OC + kBiasThreads - 1) / kBiasThreads, E);
    expert_dbias_kernel<Act><<<grid, kBiasThreads, 0, stream>>>(dbias, dout, offsets, A, OC);
    check_launch("expert_linear_backward (dbias)");
  }
}

#define SWITCHYARD_EXPERT_LINEAR_INSTANCES(Act)                                                   \
  template void expert_linear_forward<Act>(Act*, const Act*, const ExpertWeights&, const float*,  \
                                           const int32_t*, int, int, int, int, cudaStream_t);     \
  template void expert_linear_backward<Act>(Act*, float*, float*, const Act*, const Act*,         \
                                            const ExpertWeights&, const int32_t*, int, int, int,  \
                                            int, cudaStream_t);

SWITCHYARD_EXPERT_LINEAR_INSTANCES(float)
SWITCHYARD_EXPERT_LINEAR_INSTANCES(bf16)

#undef SWITCHYARD_EXPERT_LINEAR_INSTANCES

}  // namespace switchyard::backend::cuda
