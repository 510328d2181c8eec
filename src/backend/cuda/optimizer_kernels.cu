#include "backend/cuda/optimizer_kernels.h"

#include <algorithm>
#include <cmath>

#include "backend/cuda/cuda_check.h"
#include "backend/cuda/device_helpers.cuh"
#include "backend/gradient_clipping.h"

namespace switchyard::backend::cuda {
namespace {

using device::kWarp;

constexpr unsigned kThreads = 256;
constexpr int kWarps = kThreads / kWarp;
constexpr int kQuad = 4;  // floats per 16-byte access

// ---- AdamW ----

// The per-step scalars of the update, rounded to float on the host exactly as the CPU kernels
// round them.
struct AdamWFactors {
  float decay;         // 1 - lr * wd
  float step_size;     // lr / (1 - beta1^step)
  float inv_sqrt_bc2;  // 1 / sqrt(1 - beta2^step)
  float beta1;
  float beta2;
  float one_minus_beta1;
  float one_minus_beta2;
  float epsilon;
  float grad_scale;
};

// The CPU's expression, operation for operation; the _rn intrinsics keep the compiler from fusing
// multiply-adds, so the results do not depend on the compiler's contraction choices.
__device__ __forceinline__ void adamw_element(float& p, float grad, float& m, float& v,
                                              const AdamWFactors& f) {
  const float g = __fmul_rn(grad, f.grad_scale);
  const float mi = __fadd_rn(__fmul_rn(f.beta1, m), __fmul_rn(f.one_minus_beta1, g));
  const float vi = __fadd_rn(__fmul_rn(f.beta2, v), __fmul_rn(__fmul_rn(f.one_minus_beta2, g), g));
  const float denom = __fadd_rn(__fmul_rn(__fsqrt_rn(vi), f.inv_sqrt_bc2), f.epsilon);
  p = __fsub_rn(__fmul_rn(p, f.decay), __fdiv_rn(__fmul_rn(f.step_size, mi), denom));
  m = mi;
  v = vi;
}

__device__ __forceinline__ unsigned bf16_bits(float x) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(x));
}

// Thread work items are quads of 4 elements; with `vector` (params, grads, m, v 16-byte aligned,
// params_copy 8-byte aligned or null) a whole quad moves in 16-byte accesses (8 for the copy).
// With grad_sum_of_squares (a device double), the gradients are also scaled by the clipping
// factor of that norm, worked out by every thread from the same value, so identically.
__global__ void __launch_bounds__(kThreads)
    adamw_kernel(float* params, const float* grads, float* m, float* v, bf16* params_copy,
                 size_t N, AdamWFactors f, bool vector, const double* grad_sum_of_squares,
                 float clip) {
  if (grad_sum_of_squares != nullptr) {
    f.grad_scale =
        __fmul_rn(f.grad_scale, clip_scale(global_norm(*grad_sum_of_squares), clip));
  }
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  const size_t quads = (N + kQuad - 1) / kQuad;
  for (size_t q = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; q < quads;
       q += stride) {
    const size_t i = q * kQuad;
    if (vector && i + kQuad <= N) {
      float4 p4 = *reinterpret_cast<const float4*>(params + i);
      const float4 g4 = *reinterpret_cast<const float4*>(grads + i);
      float4 m4 = *reinterpret_cast<const float4*>(m + i);
      float4 v4 = *reinterpret_cast<const float4*>(v + i);
      adamw_element(p4.x, g4.x, m4.x, v4.x, f);
      adamw_element(p4.y, g4.y, m4.y, v4.y, f);
      adamw_element(p4.z, g4.z, m4.z, v4.z, f);
      adamw_element(p4.w, g4.w, m4.w, v4.w, f);
      *reinterpret_cast<float4*>(params + i) = p4;
      *reinterpret_cast<float4*>(m + i) = m4;
      *reinterpret_cast<float4*>(v + i) = v4;
      if (params_copy != nullptr) {
        *reinterpret_cast<uint2*>(params_copy + i) =
            make_uint2(bf16_bits(p4.x) | (bf16_bits(p4.y) << 16),
                       bf16_bits(p4.z) | (bf16_bits(p4.w) << 16));
      }
    } else {
      const size_t end = i + kQuad < N ? i + kQuad : N;
      for (size_t k = i; k < end; ++k) {
        float pk = params[k], mk = m[k], vk = v[k];
        adamw_element(pk, grads[k], mk, vk, f);
        params[k] = pk;
        m[k] = mk;
        v[k] = vk;
        if (params_copy != nullptr) params_copy[k] = __float2bfloat16_rn(pk);
      }
    }
  }
}

// ---- sums over a tensor: of squares (the gradient norm) and plain (a micro-batch's loss) ----

// Blocks of phase 1: about 4 quads per thread, at most kMaxSumBlocks. A function of N alone, so
// which thread adds which elements (and so the rounding of the sum) never depends on the GPU.
constexpr size_t kMaxSumBlocks = 1024;

size_t sum_blocks(size_t N) {
  if (N == 0) return 0;
  const size_t quads = (N + kQuad - 1) / kQuad;
  const size_t per_block = static_cast<size_t>(kThreads) * 4;
  return std::min((quads + per_block - 1) / per_block, kMaxSumBlocks);
}

// The block's sum of `value` in a fixed order; the result is valid in thread 0. All threads of the
// block must call it.
__device__ __forceinline__ double block_sum(double value) {
  __shared__ double warp_sums[kWarps];
  value = device::warp_sum(value);
  const int warp = threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (lane == 0) warp_sums[warp] = value;
  __syncthreads();
  value = 0.0;
  if (warp == 0) value = device::warp_sum(lane < kWarps ? warp_sums[lane] : 0.0);
  return value;
}

template <bool kSquares>
__device__ __forceinline__ double term(float x) {
  const double d = static_cast<double>(x);
  return kSquares ? d * d : d;
}

// Phase 1: partials[block] = the block's sum of terms over its grid-stride quads.
template <bool kSquares>
__global__ void __launch_bounds__(kThreads)
    sum_partials_kernel(double* partials, const float* x, size_t N, bool vector) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  const size_t quads = (N + kQuad - 1) / kQuad;
  double acc = 0.0;
  for (size_t q = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; q < quads;
       q += stride) {
    const size_t i = q * kQuad;
    if (vector && i + kQuad <= N) {
      const float4 x4 = *reinterpret_cast<const float4*>(x + i);
      acc += term<kSquares>(x4.x);
      acc += term<kSquares>(x4.y);
      acc += term<kSquares>(x4.z);
      acc += term<kSquares>(x4.w);
    } else {
      const size_t end = i + kQuad < N ? i + kQuad : N;
      for (size_t k = i; k < end; ++k) acc += term<kSquares>(x[k]);
    }
  }
  const double total = block_sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

// Phase 2 (one block): the sum S of partials[0, count) in a fixed order (0 when empty), then
// *result = S, or *result += scale * S with `accumulate`.
__global__ void __launch_bounds__(kThreads)
    sum_total_kernel(double* result, const double* partials, size_t count, double scale,
                     bool accumulate) {
  double acc = 0.0;
  for (size_t i = threadIdx.x; i < count; i += blockDim.x) acc += partials[i];
  const double total = block_sum(acc);
  if (threadIdx.x == 0) *result = accumulate ? *result + scale * total : total;
}

template <bool kSquares>
void sum(double* result, const float* x, size_t N, double scale, bool accumulate, void* workspace,
         cudaStream_t stream) {
  const size_t blocks = sum_blocks(N);
  double* partials = static_cast<double*>(workspace);
  if (blocks > 0) {
    sum_partials_kernel<kSquares><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
        partials, x, N, device::aligned16(x));
    check_launch(kSquares ? "sum_of_squares (partial sums)" : "accumulate_sum (partial sums)");
  }
  sum_total_kernel<<<1, kThreads, 0, stream>>>(result, partials, blocks, scale, accumulate);
  check_launch(kSquares ? "sum_of_squares (total)" : "accumulate_sum (total)");
}

}  // namespace

void adamw_update(float* params, const float* grads, float* m, float* v, bf16* params_copy,
                  size_t N, float learning_rate, float beta1, float beta2, float epsilon,
                  float weight_decay, int step, float grad_scale,
                  const double* grad_sum_of_squares, float clip, cudaStream_t stream) {
  if (N == 0) return;
  // As cpu::adamw_update: factors in double from the float hyper-parameters, then rounded.
  const double lr = learning_rate, wd = weight_decay;
  AdamWFactors f;
  f.decay = static_cast<float>(1.0 - lr * wd);
  f.step_size = static_cast<float>(lr / (1.0 - std::pow(static_cast<double>(beta1), step)));
  f.inv_sqrt_bc2 =
      static_cast<float>(1.0 / std::sqrt(1.0 - std::pow(static_cast<double>(beta2), step)));
  f.beta1 = beta1;
  f.beta2 = beta2;
  f.one_minus_beta1 = 1.0f - beta1;
  f.one_minus_beta2 = 1.0f - beta2;
  f.epsilon = epsilon;
  f.grad_scale = grad_scale;
  const bool vector = device::aligned16(params) && device::aligned16(grads) &&
                      device::aligned16(m) && device::aligned16(v) &&
                      reinterpret_cast<uintptr_t>(params_copy) % 8 == 0;
  const size_t quads = (N + kQuad - 1) / kQuad;
  adamw_kernel<<<device::flat_blocks(quads, kThreads), kThreads, 0, stream>>>(
      params, grads, m, v, params_copy, N, f, vector, grad_sum_of_squares, clip);
  check_launch("adamw_update");
}

size_t sum_workspace_bytes(size_t N) { return sum_blocks(N) * sizeof(double); }

void sum_of_squares(double* result, const float* x, size_t N, void* workspace,
                    cudaStream_t stream) {
  sum<true>(result, x, N, 1.0, false, workspace, stream);
}

void accumulate_sum(double* total, const float* x, size_t N, double scale, void* workspace,
                    cudaStream_t stream) {
  sum<false>(total, x, N, scale, true, workspace, stream);
}

}  // namespace switchyard::backend::cuda
