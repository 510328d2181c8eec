#include "backend/cuda/layernorm_kernels.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_helpers.cuh"

namespace switchyard::backend::cuda {
namespace {

using device::kPack;
using device::kWarp;

// Row kernels: one warp per row, kRowsPerBlock rows per block. Lane l owns the packs
// l, l + 32, l + 64, ... of its row, i.e. columns [8 (l + 32 j), +8) for j = 0, 1, ...
constexpr int kRowsPerBlock = 8;
constexpr int kRowThreadsPerBlock = kRowsPerBlock * kWarp;
constexpr int kWarpColumns = kWarp * kPack;  // columns one step j of a warp covers

// Packs per lane that a row kernel keeps in registers for rows of C columns, rounded up to an
// instantiated count; 0 (C > 2048) means the row is re-read from memory (L1/L2) in each pass.
// A function of C alone: it fixes the order of the row's sums.
int cached_packs(int C) {
  const int packs = (C + kWarpColumns - 1) / kWarpColumns;
  if (packs <= 4) return packs;
  if (packs <= 6) return 6;
  if (packs <= 8) return 8;
  return 0;
}

// out = layernorm(x) for one row per warp, x = inp (a), or, when kResidual, x = round(a + b),
// which is stored to residual first. Three passes over x: sum, deviations from that rough mean,
// output. With kPacks > 0 the lane's values stay in registers between passes, otherwise passes 2
// and 3 re-read x from inp or from the residual just stored (the lane's own writes). The fused and
// plain kernels run the same arithmetic in the same order on the same (rounded) values.
template <typename Act, int kPacks, bool kResidual>
__global__ void __launch_bounds__(kRowThreadsPerBlock)
    layernorm_forward_kernel(Act* out, float* mean, float* rstd, Act* residual, const Act* a,
                             const Act* b, const float* weight, const float* bias, int N, int C,
                             float epsilon) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp;
  if (row >= N) return;  // whole warps leave; no block-wide barrier follows
  const int lane = threadIdx.x % kWarp;
  const size_t offset = static_cast<size_t>(row) * C;
  const Act* a_row = a + offset;
  const Act* b_row = kResidual ? b + offset : nullptr;
  Act* residual_row = kResidual ? residual + offset : nullptr;
  const Act* x_row = kResidual ? residual_row : a_row;  // where passes 2 and 3 re-read x
  Act* out_row = out + offset;
  const bool a_vector = device::aligned16_device(a_row);
  const bool b_vector = device::aligned16_device(b_row);
  const bool residual_vector = device::aligned16_device(residual_row);
  const bool x_vector = device::aligned16_device(x_row);
  const bool out_vector = device::aligned16_device(out_row);
  const bool param_vector = device::aligned16_device(weight) && device::aligned16_device(bias);

  constexpr bool kCached = kPacks > 0;
  const int steps = kCached ? kPacks : (C + kWarpColumns - 1) / kWarpColumns;
  float cache[kCached ? kPacks : 1][kPack];
  // x of the pack at column c in pass 2 or 3.
  auto reload = [&](int j, int c, float (&x)[kPack]) {
    if constexpr (kCached) {
#pragma unroll
      for (int k = 0; k < kPack; ++k) x[k] = cache[j][k];
    } else {
      device::load_pack_checked(x_row, c, C, x_vector, x);
    }
  };

  float sum = 0.0f;
#pragma unroll
  for (int j = 0; j < steps; ++j) {
    const int c = (lane + kWarp * j) * kPack;
    if (c >= C) continue;
    float x[kPack];
    device::load_pack_checked(a_row, c, C, a_vector, x);
    if constexpr (kResidual) {
      float y[kPack];
      device::load_pack_checked(b_row, c, C, b_vector, y);
#pragma unroll
      for (int k = 0; k < kPack; ++k) x[k] = device::round_to<Act>(x[k] + y[k]);
      device::store_pack_checked(residual_row, c, C, residual_vector, x);
    }
#pragma unroll
    for (int k = 0; k < kPack; ++k) {
      if (c + k < C) sum += x[k];
      if constexpr (kCached) cache[j][k] = x[k];
    }
  }
  const float rough_mean = device::warp_sum(sum) / C;

  // Corrected two-pass statistics: with d = x - rough_mean, the mean is rough_mean + sum(d) / C and
  // the variance sum(d^2) / C - (sum(d) / C)^2. For a row far from zero the rough mean's rounding
  // in pass 1 can be off by ulps of the mean; the deviations are small and (nearly) exact, so the
  // correction restores a mean rounded about once, and no cancellation creeps into the variance.
  float deviation = 0.0f;
  float squares = 0.0f;
#pragma unroll
  for (int j = 0; j < steps; ++j) {
    const int c = (lane + kWarp * j) * kPack;
    if (c >= C) continue;
    float x[kPack];
    reload(j, c, x);
#pragma unroll
    for (int k = 0; k < kPack; ++k) {
      const float d = x[k] - rough_mean;
      if (c + k < C) {
        deviation += d;
        squares += d * d;
      }
    }
  }
  const float correction = device::warp_sum(deviation) / C;
  const float m = rough_mean + correction;
  const float var = fmaxf(device::warp_sum(squares) / C - correction * correction, 0.0f);
  const float s = 1.0f / sqrtf(var + epsilon);

#pragma unroll
  for (int j = 0; j < steps; ++j) {
    const int c = (lane + kWarp * j) * kPack;
    if (c >= C) continue;
    float x[kPack], w[kPack], bb[kPack], o[kPack];
    reload(j, c, x);
    device::load_pack_checked(weight, c, C, param_vector, w);
    device::load_pack_checked(bias, c, C, param_vector, bb);
#pragma unroll
    for (int k = 0; k < kPack; ++k) o[k] = (x[k] - m) * s * w[k] + bb[k];
    device::store_pack_checked(out_row, c, C, out_vector, o);
  }
  if (lane == 0) {
    if (mean != nullptr) mean[row] = m;
    if (rstd != nullptr) rstd[row] = s;
  }
}

template <typename Act, bool kResidual>
void launch_forward(const char* name, Act* out, float* mean, float* rstd, Act* residual,
                    const Act* a, const Act* b, const float* weight, const float* bias, int N,
                    int C, float epsilon, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  const unsigned grid = (N + kRowsPerBlock - 1) / kRowsPerBlock;
#define SWITCHYARD_LAUNCH(PACKS)                                                       \
  layernorm_forward_kernel<Act, PACKS, kResidual><<<grid, kRowThreadsPerBlock, 0, stream>>>( \
      out, mean, rstd, residual, a, b, weight, bias, N, C, epsilon)
  switch (cached_packs(C)) {
    case 1: SWITCHYARD_LAUNCH(1); break;
    case 2: SWITCHYARD_LAUNCH(2); break;
    case 3: SWITCHYARD_LAUNCH(3); break;
    case 4: SWITCHYARD_LAUNCH(4); break;
    case 6: SWITCHYARD_LAUNCH(6); break;
    case 8: SWITCHYARD_LAUNCH(8); break;
    default: SWITCHYARD_LAUNCH(0); break;
  }
#undef SWITCHYARD_LAUNCH
  check_launch(name);
}

// dinp of one row per warp: pass 1 forms dnorm = weight * dout and norm = (x - mean) * rstd and
// sums dnorm and dnorm * norm; pass 2 accumulates into dinp. As in the forward kernel, kPacks > 0
// keeps a lane's dnorm and norm in registers; 0 recomputes them from memory.
template <typename Act, int kPacks>
__global__ void __launch_bounds__(kRowThreadsPerBlock)
    layernorm_backward_dinp_kernel(Act* dinp, const Act* dout, const Act* inp, const float* weight,
                                   const float* mean, const float* rstd, int N, int C) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp;
  if (row >= N) return;  // whole warps leave; no block-wide barrier follows
  const int lane = threadIdx.x % kWarp;
  const size_t offset = static_cast<size_t>(row) * C;
  const Act* d_row = dout + offset;
  const Act* x_row = inp + offset;
  Act* dx_row = dinp + offset;
  const bool d_vector = device::aligned16_device(d_row);
  const bool x_vector = device::aligned16_device(x_row);
  const bool dx_vector = device::aligned16_device(dx_row);
  const bool w_vector = device::aligned16_device(weight);
  const float m = mean[row];
  const float s = rstd[row];

  auto compute = [&](int c, float (&dnorm)[kPack], float (&norm)[kPack]) {
    float d[kPack], x[kPack], w[kPack];
    device::load_pack_checked(d_row, c, C, d_vector, d);
    device::load_pack_checked(x_row, c, C, x_vector, x);
    device::load_pack_checked(weight, c, C, w_vector, w);
#pragma unroll
    for (int k = 0; k < kPack; ++k) {
      norm[k] = (x[k] - m) * s;
      dnorm[k] = w[k] * d[k];
    }
  };

  constexpr bool kCached = kPacks > 0;
  const int steps = kCached ? kPacks : (C + kWarpColumns - 1) / kWarpColumns;
  float cache_dnorm[kCached ? kPacks : 1][kPack];
  float cache_norm[kCached ? kPacks : 1][kPack];

  float sum_dnorm = 0.0f;
  float sum_dnorm_norm = 0.0f;
#pragma unroll
  for (int j = 0; j < steps; ++j) {
    const int c = (lane + kWarp * j) * kPack;
    if (c >= C) continue;
    float dnorm[kPack], norm[kPack];
    compute(c, dnorm, norm);
#pragma unroll
    for (int k = 0; k < kPack; ++k) {
      if (c + k < C) {
        sum_dnorm += dnorm[k];
        sum_dnorm_norm += dnorm[k] * norm[k];
      }
      if constexpr (kCached) {
        cache_dnorm[j][k] = dnorm[k];
        cache_norm[j][k] = norm[k];
      }
    }
  }
  const float mean_dnorm = device::warp_sum(sum_dnorm) / C;
  const float mean_dnorm_norm = device::warp_sum(sum_dnorm_norm) / C;

#pragma unroll
  for (int j = 0; j < steps; ++j) {
    const int c = (lane + kWarp * j) * kPack;
    if (c >= C) continue;
    float dnorm[kPack], norm[kPack], dx[kPack];
    if constexpr (kCached) {
#pragma unroll
      for (int k = 0; k < kPack; ++k) {
        dnorm[k] = cache_dnorm[j][k];
        norm[k] = cache_norm[j][k];
      }
    } else {
      compute(c, dnorm, norm);
    }
    device::load_pack_checked(dx_row, c, C, dx_vector, dx);
#pragma unroll
    for (int k = 0; k < kPack; ++k) {
      dx[k] += (dnorm[k] - mean_dnorm - norm[k] * mean_dnorm_norm) * s;
    }
    device::store_pack_checked(dx_row, c, C, dx_vector, dx);
  }
}

// Parameter gradients, phase 1: block (x, y) sums the rows of chunk y over a tile of kTileColumns
// columns into partials[y, 0:C] (dweight) and partials[y, C:2C] (dbias). Thread (tx, ty) owns
// columns [tile + 8 tx, +8) and rows chunk_begin + ty, + kRowThreads, ...; the kRowThreads sums of
// a column are then added in ty order.
constexpr int kColumnThreads = 32;
constexpr int kRowThreads = 8;
constexpr int kTileColumns = kColumnThreads * kPack;

template <typename Act>
__global__ void __launch_bounds__(kColumnThreads * kRowThreads)
    layernorm_backward_partials_kernel(float* partials, const Act* dout, const Act* inp,
                                       const float* mean, const float* rstd, int N, int C,
                                       int rows_per_chunk) {
  __shared__ float sums[2][kRowThreads][kTileColumns];
  const int tile = blockIdx.x * kTileColumns;
  const int column = tile + threadIdx.x * kPack;
  const int chunk = blockIdx.y;
  const int row_begin = chunk * rows_per_chunk;
  const int row_end = min(N, row_begin + rows_per_chunk);
  float dweight[kPack] = {};
  float dbias[kPack] = {};
  if (column < C) {
#pragma unroll 2
    for (int r = row_begin + threadIdx.y; r < row_end; r += kRowThreads) {
      const size_t offset = static_cast<size_t>(r) * C;
      float d[kPack], x[kPack];
      device::load_pack_checked(dout + offset, column, C, device::aligned16_device(dout + offset),
                                d);
      device::load_pack_checked(inp + offset, column, C, device::aligned16_device(inp + offset), x);
      const float m = mean[r];
      const float s = rstd[r];
#pragma unroll
      for (int k = 0; k < kPack; ++k) {
        dweight[k] += (x[k] - m) * s * d[k];
        dbias[k] += d[k];
      }
    }
  }
#pragma unroll
  for (int k = 0; k < kPack; ++k) {
    sums[0][threadIdx.y][threadIdx.x * kPack + k] = dweight[k];
    sums[1][threadIdx.y][threadIdx.x * kPack + k] = dbias[k];
  }
  __syncthreads();
  const int lin = threadIdx.y * kColumnThreads + threadIdx.x;
  float* partial_row = partials + static_cast<size_t>(chunk) * 2 * C;
  for (int j = lin; j < kTileColumns; j += kColumnThreads * kRowThreads) {
    if (tile + j >= C) continue;
    float total_dweight = 0.0f;
    float total_dbias = 0.0f;
#pragma unroll
    for (int y = 0; y < kRowThreads; ++y) {
      total_dweight += sums[0][y][j];
      total_dbias += sums[1][y][j];
    }
    partial_row[tile + j] = total_dweight;
    partial_row[C + tile + j] = total_dbias;
  }
}

// Phase 2: for each of the 2C partial columns, the sum over chunks in a fixed order (thread
// (tx, ty) adds chunks ty, ty + kChunkThreads, ...; the kChunkThreads sums are added in ty order),
// accumulated into dweight (columns < C) or dbias.
constexpr int kChunkThreads = 16;

__global__ void __launch_bounds__(kColumnThreads * kChunkThreads)
    layernorm_sum_partials_kernel(float* dweight, float* dbias, const float* partials, int chunks,
                                  int C) {
  __shared__ float sums[kChunkThreads][kColumnThreads];
  const int64_t width = 2 * static_cast<int64_t>(C);
  const int64_t column = static_cast<int64_t>(blockIdx.x) * kColumnThreads + threadIdx.x;
  float acc = 0.0f;
  if (column < width) {
#pragma unroll 4
    for (int p = threadIdx.y; p < chunks; p += kChunkThreads) {
      acc += partials[static_cast<size_t>(p) * width + column];
    }
  }
  sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && column < width) {
    float total = 0.0f;
#pragma unroll
    for (int y = 0; y < kChunkThreads; ++y) total += sums[y][threadIdx.x];
    if (column < C) {
      dweight[column] += total;
    } else {
      dbias[column - C] += total;
    }
  }
}

}  // namespace

template <typename Act>
void layernorm_forward(Act* out, float* mean, float* rstd, const Act* inp, const float* weight,
                       const float* bias, int N, int C, float epsilon, cudaStream_t stream) {
  launch_forward<Act, false>("layernorm_forward", out, mean, rstd, nullptr, inp, nullptr, weight,
                             bias, N, C, epsilon, stream);
}

template <typename Act>
void residual_layernorm_forward(Act* residual, Act* out, float* mean, float* rstd, const Act* a,
                                const Act* b, const float* weight, const float* bias, int N, int C,
                                float epsilon, cudaStream_t stream) {
  launch_forward<Act, true>("residual_layernorm_forward", out, mean, rstd, residual, a, b, weight,
                            bias, N, C, epsilon, stream);
}

size_t layernorm_backward_workspace_bytes(int N, int C) {
  int rows_per_chunk = 0;
  const int chunks = device::reduction_chunks(N, &rows_per_chunk);
  return C <= 0 ? 0 : static_cast<size_t>(chunks) * 2 * static_cast<size_t>(C) * sizeof(float);
}

template <typename Act>
void layernorm_backward(Act* dinp, float* dweight, float* dbias, const Act* dout, const Act* inp,
                        const float* weight, const float* mean, const float* rstd, int N, int C,
                        void* workspace, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  const unsigned grid = (N + kRowsPerBlock - 1) / kRowsPerBlock;
#define SWITCHYARD_LAUNCH(PACKS)                                                         \
  layernorm_backward_dinp_kernel<Act, PACKS><<<grid, kRowThreadsPerBlock, 0, stream>>>( \
      dinp, dout, inp, weight, mean, rstd, N, C)
  switch (cached_packs(C)) {
    case 1: SWITCHYARD_LAUNCH(1); break;
    case 2: SWITCHYARD_LAUNCH(2); break;
    case 3: SWITCHYARD_LAUNCH(3); break;
    case 4: SWITCHYARD_LAUNCH(4); break;
    case 6: SWITCHYARD_LAUNCH(6); break;
    case 8: SWITCHYARD_LAUNCH(8); break;
    default: SWITCHYARD_LAUNCH(0); break;
  }
#undef SWITCHYARD_LAUNCH
  check_launch("layernorm_backward (dinp)");

  int rows_per_chunk = 0;
  const int chunks = device::reduction_chunks(N, &rows_per_chunk);
  float* partials = static_cast<float*>(workspace);
  const dim3 grid1((C + kTileColumns - 1) / kTileColumns, chunks);
  layernorm_backward_partials_kernel<Act><<<grid1, dim3(kColumnThreads, kRowThreads), 0, stream>>>(
      partials, dout, inp, mean, rstd, N, C, rows_per_chunk);
  check_launch("layernorm_backward (partial sums)");
  const unsigned grid2 =
      static_cast<unsigned>((2 * static_cast<int64_t>(C) + kColumnThreads - 1) / kColumnThreads);
  layernorm_sum_partials_kernel<<<grid2, dim3(kColumnThreads, kChunkThreads), 0, stream>>>(
      dweight, dbias, partials, chunks, C);
  check_launch("layernorm_backward (sum of partials)");
}

#define SWITCHYARD_LAYERNORM_INSTANCES(Act)                                                      \
  template void layernorm_forward<Act>(Act*, float*, float*, const Act*, const float*,           \
                                       const float*, int, int, float, cudaStream_t);             \
  template void residual_layernorm_forward<Act>(Act*, Act*, float*, float*, const Act*,          \
                                                const Act*, const float*, const float*, int, int, \
                                                float, cudaStream_t);                            \
  template void layernorm_backward<Act>(Act*, float*, float*, const Act*, const Act*,            \
                                        const float*, const float*, const float*, int, int,      \
                                        void*, cudaStream_t);

SWITCHYARD_LAYERNORM_INSTANCES(float)
SWITCHYARD_LAYERNORM_INSTANCES(bf16)

#undef SWITCHYARD_LAYERNORM_INSTANCES

}  // namespace switchyard::backend::cuda
