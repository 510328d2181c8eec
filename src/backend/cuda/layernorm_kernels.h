// LayerNorm CUDA kernels: forward, forward fused with the residual add before it, and backward.
//
// Act is the activation storage type (float or bf16); weight, bias, their gradients and the saved
// statistics are fp32, and all arithmetic is fp32. One warp normalises one row, holding the row in
// registers when C <= 2048 (GPT-2 XL's C = 1600 included) and re-reading it from cache otherwise.
// The order of every sum depends on N and C only, never on pointer alignment (which picks 16-byte
// or scalar accesses), so results are repeatable and the fused and plain forward passes agree bit
// for bit. Any C >= 1 works.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>

#include "backend/cuda/cuda_types.h"

namespace switchyard::backend::cuda {

// out[N,C] = (inp - mean) * rstd * weight[C] + bias[C] per row, with mean and biased variance
// computed in fp32 by the corrected two-pass algorithm (accurate for rows whose mean is large next
// to their spread) and rstd = 1 / sqrt(var + epsilon) as torch.nn.LayerNorm (whose epsilon is
// 1e-5). Writes mean[N] and rstd[N] (fp32) unless they are null. out may be inp (each element is
// read before the same thread overwrites it).
template <typename Act>
void layernorm_forward(Act* out, float* mean, float* rstd, const Act* inp, const float* weight,
                       const float* bias, int N, int C, float epsilon, cudaStream_t stream);

// residual[N,C] = a + b (rounded to Act), then out = layernorm(residual) exactly as
// layernorm_forward computes it from the stored (rounded) residual, bit for bit. One pass over a
// and b. residual may be a or b (an in-place residual stream); out must overlap none of them.
template <typename Act>
void residual_layernorm_forward(Act* residual, Act* out, float* mean, float* rstd, const Act* a,
                                const Act* b, const float* weight, const float* bias, int N, int C,
                                float epsilon, cudaStream_t stream);

// Scratch bytes layernorm_backward needs for these sizes (0 when N or C is 0).
size_t layernorm_backward_workspace_bytes(int N, int C);

// With norm = (inp - mean) * rstd and dnorm = weight * dout:
//   dinp[N,C] ACCUMULATES rstd * (dnorm - mean_c(dnorm) - norm * mean_c(dnorm * norm)),
//   dweight[C] ACCUMULATES sum_n norm * dout, dbias[C] ACCUMULATES sum_n dout.
// mean[N] and rstd[N] are those layernorm_forward saved. The parameter gradients are reduced
// deterministically: per-chunk partial sums into `workspace` (layernorm_backward_workspace_bytes
// bytes, any alignment of 4), then a second kernel adds the chunks in index order. dinp must not
// overlap dout or inp.
template <typename Act>
void layernorm_backward(Act* dinp, float* dweight, float* dbias, const Act* dout, const Act* inp,
                        const float* weight, const float* mean, const float* rstd, int N, int C,
                        void* workspace, cudaStream_t stream);

}  // namespace switchyard::backend::cuda
