// Optimizer CUDA kernels: the AdamW update, the sum of squares behind global-norm clipping, and
// the plain sum that adds up a training step's loss on the device.
//
// Both run over fp32 tensors of any length (size_t) and any element alignment, with 16-byte
// accesses where the pointers allow them.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "backend/cuda/cuda_types.h"

namespace switchyard::backend::cuda {

// One AdamW step over params[N] (fp32 master weights), as torch.optim.AdamW (decoupled weight
// decay) and in cpu::adamw_update's exact form and order, with g = grads * grad_scale:
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;
//   params = params (1 - lr wd) - step_size m / (sqrt(v) inv_sqrt_bc2 + eps),
//   step_size = lr / (1 - beta1^step), inv_sqrt_bc2 = 1 / sqrt(1 - beta2^step).
// The step-dependent factors are computed on the host in double and rounded to float, as the CPU
// does. Each float operation is rounded separately (no fused multiply-adds), so the result is that
// formula's unfused evaluation bit for bit; the CPU build may fuse multiply-adds, so CPU and GPU
// agree to a few ulps, not bit for bit. step is 1-based and must be >= 1; betas in [0, 1). If
// params_copy is non-null it also receives the updated params rounded to bf16 (the model's bf16
// weight copy that the matrix products read, ops::AdamW::params_copy). With grad_sum_of_squares
// (a device double; may be null) g is further multiplied by
// clip_scale(global_norm(*grad_sum_of_squares), clip) (gradient_clipping.h), so clipping needs
// no trip to the host. One pass: reads params, grads, m, v; writes params, m, v and params_copy.
void adamw_update(float* params, const float* grads, float* m, float* v, bf16* params_copy,
                  size_t N, float learning_rate, float beta1, float beta2, float epsilon,
                  float weight_decay, int step, float grad_scale,
                  const double* grad_sum_of_squares, float clip, cudaStream_t stream);

// Scratch bytes sum_of_squares and accumulate_sum need for N elements (0 for N = 0).
size_t sum_workspace_bytes(size_t N);

// *result (a device double) = the sum of x[i]^2 over N floats, accumulated in double.
// Deterministic: a fixed grid (a function of N alone) writes per-block partial sums to `workspace`
// (sum_workspace_bytes(N) bytes, 8-byte aligned), which one block then adds in a fixed order.
// N = 0 writes 0.
void sum_of_squares(double* result, const float* x, size_t N, void* workspace,
                    cudaStream_t stream);

// *total (a device double) += scale * (the sum of x[N], accumulated in double), in the same fixed
// order as sum_of_squares, so deterministic.
void accumulate_sum(double* total, const float* x, size_t N, double scale, void* workspace,
                    cudaStream_t stream);

}  // namespace switchyard::backend::cuda
