#include "backend/cuda/cross_entropy_kernels.h"

#include <cmath>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_helpers.cuh"

namespace switchyard::backend::cuda {
namespace {

using device::kPack;
using device::kWarp;

constexpr int kThreads = 512;  // one block per row
constexpr int kWarps = kThreads / kWarp;

// Visits every element of row[0, V) once: element(i) for single elements, pack(i) for the kPack
// elements from i, where row + i is 16-byte aligned. With `vector`, the elements before the row's
// first 16-byte boundary go one by one, then whole packs, then the last few one by one; without it
// (an output whose alignment differs from the row's), all one by one. The partition depends only on
// V, the row's address and `vector`, so two calls with the same arguments give each thread the same
// elements: what lets the backward pass overwrite logits in place.
template <typename Act, typename Element, typename Pack>
__device__ __forceinline__ void for_each_in_row(const Act* row, int V, bool vector,
                                                Element element, Pack pack) {
  const int tid = threadIdx.x;
  if (!vector) {
    for (int i = tid; i < V; i += kThreads) element(i);
    return;
  }
  const int misalignment = static_cast<int>(reinterpret_cast<uintptr_t>(row) % 16);
  const int head = min(V, (16 - misalignment) % 16 / static_cast<int>(sizeof(Act)));
  const int packs = (V - head) / kPack;
  const int tail = head + packs * kPack;  // fewer than kPack elements follow
  if (tid < head) element(tid);
  for (int p = tid; p < packs; p += kThreads) pack(head + p * kPack);
  if (tail + tid < V) element(tail + tid);
}

// An online softmax's running statistics: the maximum so far, the sum of exp(x - max) so far, and
// `poison`, the sum of x * 0 (NaN once any x is NaN or infinite, as the CPU kernels report it).
struct Stats {
  float max;
  float sum;
  float poison;
};

__device__ __forceinline__ Stats empty_stats() { return {-INFINITY, 0.0f, 0.0f}; }

// exp(from - to) for from <= to, exactly 1 when they are equal (so that two empty partial
// statistics, both -inf, combine without forming -inf - -inf).
__device__ __forceinline__ float rescale(float from, float to) {
  return from == to ? 1.0f : expf(from - to);
}

template <int kCount>
__device__ __forceinline__ void absorb(Stats& st, const float (&x)[kCount]) {
  float block_max = x[0];
#pragma unroll
  for (int k = 1; k < kCount; ++k) block_max = fmaxf(block_max, x[k]);
  const float m = fmaxf(st.max, block_max);
  float sum = st.sum * rescale(st.max, m);
  float poison = st.poison;
#pragma unroll
  for (int k = 0; k < kCount; ++k) {
    sum += expf(x[k] - m);
    poison += x[k] * 0.0f;
  }
  st = {m, sum, poison};
}

__device__ __forceinline__ Stats combine(const Stats& a, const Stats& b) {
  const float m = fmaxf(a.max, b.max);
  return {m, a.sum * rescale(a.max, m) + b.sum * rescale(b.max, m), a.poison + b.poison};
}

__device__ __forceinline__ Stats warp_combine(Stats st) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const Stats other = {__shfl_xor_sync(device::kFullMask, st.max, offset),
                         __shfl_xor_sync(device::kFullMask, st.sum, offset),
                         __shfl_xor_sync(device::kFullMask, st.poison, offset)};
    st = combine(st, other);
  }
  return st;
}

// The statistics of row[0, V), combined over the block in a fixed order; every thread gets them.
// Must be reached by all threads of the block (it has block-wide barriers).
template <typename Act>
__device__ Stats row_stats(const Act* row, int V, bool vector) {
  __shared__ Stats warp_stats[kWarps];
  __shared__ Stats result;
  Stats st = empty_stats();
  for_each_in_row(
      row, V, vector,
      [&](int i) {
        const float x[1] = {device::to_float(row[i])};
        absorb(st, x);
      },
      [&](int i) {
        float x[kPack];
        device::load_pack(row + i, x);
        absorb(st, x);
      });
  st = warp_combine(st);
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (lane == 0) warp_stats[warp] = st;
  __syncthreads();
  if (warp == 0) {
    st = warp_combine(lane < kWarps ? warp_stats[lane] : empty_stats());
    if (lane == 0) result = st;
  }
  __syncthreads();
  return result;
}

template <typename Act>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_forward_kernel(float* losses, const Act* logits, const int32_t* targets, int V) {
  const size_t n = blockIdx.x;
  const Act* row = logits + n * V;
  const Stats st = row_stats(row, V, true);
  if (threadIdx.x == 0) {
    losses[n] = logf(st.sum) + st.max - device::to_float(row[targets[n]]) + st.poison;
  }
}

// `vector`: dlogits and logits are equally aligned modulo 16 bytes (always so in place), so a row
// of both can be walked in the same 16-byte packs.
template <typename Act>
__global__ void __launch_bounds__(kThreads)
    cross_entropy_backward_kernel(Act* dlogits, const Act* logits, const int32_t* targets,
                                  float dloss, int V, bool vector) {
  const size_t n = blockIdx.x;
  const Act* row = logits + n * V;
  Act* out = dlogits + n * V;
  // row_stats ends with a barrier, so the whole row has been read before any of it is written.
  const Stats st = row_stats(row, V, vector);
  const float scale = dloss / st.sum + st.poison;
  const int target = targets[n];
  for_each_in_row(
      row, V, vector,
      [&](int i) {
        const float p = expf(device::to_float(row[i]) - st.max) * scale;
        out[i] = device::from_float<Act>(i == target ? p - dloss : p);
      },
      [&](int i) {
        float x[kPack];
        device::load_pack(row + i, x);
#pragma unroll
        for (int k = 0; k < kPack; ++k) {
          const float p = expf(x[k] - st.max) * scale;
          x[k] = i + k == target ? p - dloss : p;
        }
        device::store_pack(out + i, x);
      });
}

}  // namespace

template <typename Act>
void cross_entropy_forward(float* losses, const Act* logits, const int32_t* targets, int N, int V,
                           cudaStream_t stream) {
  if (N <= 0 || V <= 0) return;
  cross_entropy_forward_kernel<Act><<<N, kThreads, 0, stream>>>(losses, logits, targets, V);
  check_launch("cross_entropy_forward");
}

template <typename Act>
void cross_entropy_backward(Act* dlogits, const Act* logits, const int32_t* targets, float dloss,
                            int N, int V, cudaStream_t stream) {
  if (N <= 0 || V <= 0) return;
  // Unsigned subtraction wraps modulo 2^64, a multiple of 16, so the remainder is right.
  const bool vector =
      (reinterpret_cast<uintptr_t>(dlogits) - reinterpret_cast<uintptr_t>(logits)) % 16 == 0;
  cross_entropy_backward_kernel<Act><<<N, kThreads, 0, stream>>>(dlogits, logits, targets, dloss,
                                                                  V, vector);
  check_launch("cross_entropy_backward");
}

template void cross_entropy_forward<float>(float*, const float*, const int32_t*, int, int,
                                           cudaStream_t);
template void cross_entropy_forward<bf16>(float*, const bf16*, const int32_t*, int, int,
                                          cudaStream_t);
template void cross_entropy_backward<float>(float*, const float*, const int32_t*, float, int, int,
                                            cudaStream_t);
template void cross_entropy_backward<bf16>(bf16*, const bf16*, const int32_t*, float, int, int,
                                           cudaStream_t);

}  // namespace switchyard::backend::cuda
