// Device-side helpers the kernel files share: fp32/bf16 conversion, 16-byte packed loads and
// stores, warp sums and row chunking. CUDA code only (included by the .cu files).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "backend/cuda/cuda_types.h"

// ---- device helpers shared by all the kernel files of the CUDA backend ----

namespace switchyard::backend::cuda::device {

// Elements per pack: 16 bytes of bf16, two 16-byte accesses of float. Kernels partition rows into
// packs whatever the alignment, so the order of every sum is the same on the vector and scalar
// paths.
inline constexpr int kPack = 8;
inline constexpr int kWarp = 32;
inline constexpr unsigned kFullMask = 0xffffffffu;
// Flat (grid-stride) kernels launch at most this many blocks: enough to fill any current GPU, few
// enough that each thread does several iterations.
inline constexpr unsigned kMaxFlatBlocks = 8192;

inline bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

__device__ __forceinline__ bool aligned16_device(const void* p) {
  return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Blocks for a grid-stride loop over `units` work items with `threads` threads per block.
inline unsigned flat_blocks(size_t units, unsigned threads) {
  const size_t blocks = (units + threads - 1) / threads;
  return static_cast<unsigned>(std::min<size_t>(std::max<size_t>(blocks, 1), kMaxFlatBlocks));
}

// Rows of a column reduction are split into this many consecutive chunks of *rows_per_chunk rows,
// each summed into one partial row. A function of the row count alone, so the order of the sums
// (and so the result) never depends on the GPU. 0 chunks for no rows.
inline int reduction_chunks(int rows, int* rows_per_chunk) {
  constexpr int64_t kMinRowsPerChunk = 64;
  constexpr int64_t kMaxChunks = 1024;  // also keeps gridDim.y far below its limit of 65535
  if (rows <= 0) {
    *rows_per_chunk = 0;
    return 0;
  }
  const int64_t wanted = std::min<int64_t>((rows + kMinRowsPerChunk - 1) / kMinRowsPerChunk,
                                           kMaxChunks);
  const int64_t per = (rows + wanted - 1) / wanted;
  *rows_per_chunk = static_cast<int>(per);
  return static_cast<int>((rows + per - 1) / per);
}

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(bf16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ bf16 from_float<bf16>(float x) {
  return __float2bfloat16_rn(x);
}

// x rounded to T and back: the value a later kernel reads after x is stored as T.
template <typename T>
__device__ __forceinline__ float round_to(float x) {
  return to_float(from_float<T>(x));
}

// Packs of kPack elements at a 16-byte aligned address.
__device__ __forceinline__ void load_pack(const float* p, float (&v)[kPack]) {
  const float4 a = reinterpret_cast<const float4*>(p)[0];
  const float4 b = reinterpret_cast<const float4*>(p)[1];
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
  v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

__device__ __forceinline__ void load_pack(const bf16* p, float (&v)[kPack]) {
  // A bf16 is the top half of the float with the same value: widening is a shift.
  const uint4 raw = *reinterpret_cast<const uint4*>(p);
  const unsigned words[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    v[2 * k] = __uint_as_float(words[k] << 16);
    v[2 * k + 1] = __uint_as_float(words[k] & 0xffff0000u);
  }
}

__device__ __forceinline__ void store_pack(float* p, const float (&v)[kPack]) {
  reinterpret_cast<float4*>(p)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

__device__ __forceinline__ void store_pack(bf16* p, const float (&v)[kPack]) {
  unsigned words[4];
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    const unsigned lo = __bfloat16_as_ushort(__float2bfloat16_rn(v[2 * k]));
    const unsigned hi = __bfloat16_as_ushort(__float2bfloat16_rn(v[2 * k + 1]));
    words[k] = lo | (hi << 16);
  }
  *reinterpret_cast<uint4*>(p) = make_uint4(words[0], words[1], words[2], words[3]);
}

// The pack of elements [i, i + kPack) of base[0, n): one 16-byte access when `vector` (base is
// 16-byte aligned, which makes base + i aligned since i is a multiple of kPack) and the pack lies
// inside [0, n); element by element otherwise, with zeros past n.
template <typename T>
__device__ __forceinline__ void load_pack_checked(const T* base, size_t i, size_t n, bool vector,
                                                  float (&v)[kPack]) {
  if (vector && i + kPack <= n) {
    load_pack(base + i, v);
    return;
  }
#pragma unroll
  for (int k = 0; k < kPack; ++k) v[k] = i + k < n ? to_float(base[i + k]) : 0.0f;
}

// Stores the elements of the pack that lie inside [0, n).
template <typename T>
__device__ __forceinline__ void store_pack_checked(T* base, size_t i, size_t n, bool vector,
                                                   const float (&v)[kPack]) {
  if (vector && i + kPack <= n) {
    store_pack(base + i, v);
    return;
  }
#pragma unroll
  for (int k = 0; k < kPack; ++k) {
    if (i + k < n) base[i + k] = from_float<T>(v[k]);
  }
}

// Sum over the 32 lanes of a warp, all of which must take part. Butterfly order: every lane ends
// with the same bits (float addition is commutative), and the order is fixed, so it is repeatable.
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

__device__ __forceinline__ double warp_sum(double v) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

}  // namespace switchyard::backend::cuda::device
