#include "backend/cuda/norm_rope_kernels.h"

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_helpers.cuh"

namespace switchyard::backend::cuda {
namespace {

using device::kPack;
using device::kWarp;

// Row kernels: one warp per row, kRowsPerBlock rows per block; lane l owns the packs l, l + 32,
// ... of its row, i.e. columns [8 (l + 32 j), +8).
constexpr int kRowsPerBlock = 8;
constexpr int kRowThreads = kRowsPerBlock * kWarp;
constexpr int kWarpColumns = kWarp * kPack;

// Two passes over the row: the sum of squares, then the output (the row is re-read from cache,
// and each pack is read before the same lane overwrites it, so out may be inp).
template <typename Act>
__global__ void __launch_bounds__(kRowThreads)
    rmsnorm_forward_kernel(Act* out, float* rstd, const Act* inp, const float* weight, int N, int C,
                           float epsilon) {
  const int row = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp;
  if (row >= N) return;  // whole warps leave; no block-wide barrier follows
  const int lane = threadIdx.x % kWarp;
  const size_t offset = static_cast<size_t>(row) * C;
  const Act* x_row = inp + offset;
  Act* out_row = out + offset;
  const bool x_vector = device::aligned16_device(x_row);
  const bool out_vector = device::aligned16_device(out_row);
  const bool w_vector = device::aligned16_device(weight);

  float squares = 0.0f;
  for (int c = lane * kPack; c < C; c += kWarpColumns) {
    float x[kPack];
    device::load_pack_checked(x_row, c, C, x_vector, x);  // zeros past C
#pragma unroll
    for (int k = 0; k < kPack; ++k) squares += x[k] * x[k];
  }
  const float s = 1.0f / sqrtf(device::warp_sum(squares) / C + epsilon);
  for (int c = lane * kPack; c < C; c += kWarpColumns) {
    float x[kPack], w[kPack], o[kPack];
    device::load_pack_checked(x_row, c, C, x_vector, x);
    device::load_pack_checked(weight, c, C, w_vector, w);
#pragma unroll
    for (int k = 0; k < kPack; ++k) o[k] = x[k] * s * w[k];
    device::store_pack_checked(out_row, c, C, out_vector, o);
  }
  if (lane == 0) rstd[row] = s;
}

// dinp of one row per warp: pass 1 sums weight * dout * inp, pass 2 accumulates into dinp.
template <typename Act>
__global__ void __launch_bounds__(kRowThreads)
    rmsnorm_backward_dinp_kernel(Act* dinp, const Act* dout, const Act* inp, const float* weight,
                                 const float* rstd, int N, int C) {
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
  const float s = rstd[row];

  float projection = 0.0f;
  for (int c = lane * kPack; c < C; c += kWarpColumns) {
    float d[kPack], x[kPack], w[kPack];
    device::load_pack_checked(d_row, c, C, d_vector, d);
    device::load_pack_checked(x_row, c, C, x_vector, x);
    device::load_pack_checked(weight, c, C, w_vector, w);
#pragma unroll
    for (int k = 0; k < kPack; ++k) projection += w[k] * d[k] * x[k];
  }
  const float scaled = s * s * device::warp_sum(projection) / C;
  for (int c = lane * kPack; c < C; c += kWarpColumns) {
    float d[kPack], x[kPack], w[kPack], dx[kPack];
    device::load_pack_checked(d_row, c, C, d_vector, d);
    device::load_pack_checked(x_row, c, C, x_vector, x);
    device::load_pack_checked(weight, c, C, w_vector, w);
    device::load_pack_checked(dx_row, c, C, dx_vector, dx);
#pragma unroll
    for (int k = 0; k < kPack; ++k) dx[k] += s * (w[k] * d[k] - x[k] * scaled);
    device::store_pack_checked(dx_row, c, C, dx_vector, dx);
  }
}

// dweight, phase 1: block (x, y) sums the rows of chunk y over a tile of kTileColumns columns into
// partials[y, 0:C]. Thread (tx, ty) owns columns [tile + 8 tx, +8) and rows chunk_begin + ty,
// + kChunkRowThreads, ...; the kChunkRowThreads sums of a column are then added in ty order.
constexpr int kColumnThreads = 32;
constexpr int kChunkRowThreads = 8;
constexpr int kTileColumns = kColumnThreads * kPack;

template <typename Act>
__global__ void __launch_bounds__(kColumnThreads * kChunkRowThreads)
    rmsnorm_backward_partials_kernel(float* partials, const Act* dout, const Act* inp,
                                     const float* rstd, int N, int C, int rows_per_chunk) {
  __shared__ float sums[kChunkRowThreads][kTileColumns];
  const int tile = blockIdx.x * kTileColumns;
  const int column = tile + threadIdx.x * kPack;
  const int chunk = blockIdx.y;
  const int row_begin = chunk * rows_per_chunk;
  const int row_end = min(N, row_begin + rows_per_chunk);
  float acc[kPack] = {};
  if (column < C) {
    for (int r = row_begin + threadIdx.y; r < row_end; r += kChunkRowThreads) {
      const size_t offset = static_cast<size_t>(r) * C;
      float d[kPack], x[kPack];
      device::load_pack_checked(dout + offset, column, C, device::aligned16_device(dout + offset),
                                d);
      device::load_pack_checked(inp + offset, column, C, device::aligned16_device(inp + offset), x);
      const float s = rstd[r];
#pragma unroll
      for (int k = 0; k < kPack; ++k) acc[k] += x[k] * s * d[k];
    }
  }
#pragma unroll
  for (int k = 0; k < kPack; ++k) sums[threadIdx.y][threadIdx.x * kPack + k] = acc[k];
  __syncthreads();
  const int lin = threadIdx.y * kColumnThreads + threadIdx.x;
  float* partial_row = partials + static_cast<size_t>(chunk) * C;
  for (int j = lin; j < kTileColumns; j += kColumnThreads * kChunkRowThreads) {
    if (tile + j >= C) continue;
    float total = 0.0f;
#pragma unroll
    for (int y = 0; y < kChunkRowThreads; ++y) total += sums[y][j];
    partial_row[tile + j] = total;
  }
}

// Phase 2: for each column, the sum over chunks in a fixed order (thread (tx, ty) adds chunks
// ty, ty + kChunkThreads, ...; the kChunkThreads sums are added in ty order), added to dweight.
constexpr int kChunkThreads = 16;

__global__ void __launch_bounds__(kColumnThreads * kChunkThreads)
    rmsnorm_sum_partials_kernel(float* dweight, const float* partials, int chunks, int C) {
  __shared__ float sums[kChunkThreads][kColumnThreads];
  const int column = blockIdx.x * kColumnThreads + threadIdx.x;
  float acc = 0.0f;
  if (column < C) {
    for (int p = threadIdx.y; p < chunks; p += kChunkThreads) {
      acc += partials[static_cast<size_t>(p) * C + column];
    }
  }
  sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && column < C) {
    float total = 0.0f;
#pragma unroll
    for (int y = 0; y < kChunkThreads; ++y) total += sums[y][threadIdx.x];
    dweight[column] += total;
  }
}

// ---- rope ----

constexpr int kRopeThreads = 256;

// One thread per (row, head, pair), grid-stride.
template <typename Act>
__global__ void __launch_bounds__(kRopeThreads)
    rope_kernel(Act* x, int64_t ldx, const float* cos, const float* sin, const int32_t* positions,
                int table_rows, int N, int heads, int half, float sign) {
  const size_t pairs = static_cast<size_t>(N) * heads * half;
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < pairs;
       i += stride) {
    const int pair = static_cast<int>(i % half);
    const size_t head_row = i / half;  // n * heads + h
    const int h = static_cast<int>(head_row % heads);
    const size_t n = head_row / heads;
    Act* lo = x + n * ldx + static_cast<size_t>(h) * 2 * half + pair;
    Act* hi = lo + half;
    const int32_t p = positions[n];
    if (p < 0 || p >= table_rows) {
      *lo = *hi = device::from_float<Act>(NAN);
      continue;
    }
    const float c = cos[static_cast<size_t>(p) * half + pair];
    const float s = sign * sin[static_cast<size_t>(p) * half + pair];
    const float a = device::to_float(*lo), b = device::to_float(*hi);
    *lo = device::from_float<Act>(a * c - b * s);
    *hi = device::from_float<Act>(b * c + a * s);
  }
}

}  // namespace

template <typename Act>
void rmsnorm_forward(Act* out, float* rstd, const Act* inp, const float* weight, int N, int C,
                     float epsilon, cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  const unsigned grid = (N + kRowsPerBlock - 1) / kRowsPerBlock;
  rmsnorm_forward_kernel<Act><<<grid, kRowThreads, 0, stream>>>(out, rstd, inp, weight, N, C,
                                                                 epsilon);
  check_launch("rmsnorm_forward");
}

size_t rmsnorm_backward_workspace_bytes(int N, int C) {
  int rows_per_chunk = 0;
  const int chunks = device::reduction_chunks(N, &rows_per_chunk);
  return C <= 0 ? 0 : static_cast<size_t>(chunks) * static_cast<size_t>(C) * sizeof(float);
}

template <typename Act>
void rmsnorm_backward(Act* dinp, float* dweight, const Act* dout, const Act* inp,
                      const float* weight, const float* rstd, int N, int C, void* workspace,
                      cudaStream_t stream) {
  if (N <= 0 || C <= 0) return;
  int rows_per_chunk = 0;
  const int chunks = device::reduction_chunks(N, &rows_per_chunk);
  float* partials = static_cast<float*>(workspace);
  const dim3 grid1((C + kTileColumns - 1) / kTileColumns, chunks);
  rmsnorm_backward_partials_kernel<Act>
      <<<grid1, dim3(kColumnThreads, kChunkRowThreads), 0, stream>>>(partials, dout, inp, rstd, N,
                                                                     C, rows_per_chunk);
  check_launch("rmsnorm_backward (partial sums)");
  const unsigned grid2 = (C + kColumnThreads - 1) / kColumnThreads;
  rmsnorm_sum_partials_kernel<<<grid2, dim3(kColumnThreads, kChunkThreads), 0, stream>>>(
      dweight, partials, chunks, C);
  check_launch("rmsnorm_backward (sum of partials)");
  // Last: dinp may be dout or inp, which the partial sums read.
  const unsigned grid = (N + kRowsPerBlock - 1) / kRowsPerBlock;
  rmsnorm_backward_dinp_kernel<Act><<<grid, kRowThreads, 0, stream>>>(dinp, dout, inp, weight,
                                                                       rstd, N, C);
  check_launch("rmsnorm_backward (dinp)");
}

template <typename Act>
void rope(Act* x, int64_t ldx, const float* cos, const float* sin, const int32_t* positions,
          int table_rows, int N, int heads, int head_dim, bool transpose, cudaStream_t stream) {
  const int half = head_dim / 2;
  if (N <= 0 || heads <= 0 || half <= 0) return;
  const size_t pairs = static_cast<size_t>(N) * heads * half;
  rope_kernel<Act><<<device::flat_blocks(pairs, kRopeThreads), kRopeThreads, 0, stream>>>(
      x, ldx, cos, sin, positions, table_rows, N, heads, half, transpose ? -1.0f : 1.0f);
  check_launch("rope");
}

#define SWITCHYARD_NORM_ROPE_INSTANCES(Act)                                                       \
  template void rmsnorm_forward<Act>(Act*, float*, const Act*, const float*, int, int, float,     \
                                     cudaStream_t);                                               \
  template void rmsnorm_backward<Act>(Act*, float*, const Act*, const Act*, const float*,         \
                                      const float*, int, int, void*, cudaStream_t);               \
  template void rope<Act>(Act*, int64_t, const float*, const float*, const int32_t*, int, int,    \
                          int, int, bool, cudaStream_t);

SWITCHYARD_NORM_ROPE_INSTANCES(float)
SWITCHYARD_NORM_ROPE_INSTANCES(bf16)

#undef SWITCHYARD_NORM_ROPE_INSTANCES

}  // namespace switchyard::backend::cuda
