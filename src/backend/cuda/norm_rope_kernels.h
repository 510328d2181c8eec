// RMSNorm and rotary position embedding CUDA kernels (ops::RmsNorm, ops::RmsNormBackward,
// ops::Rope), the CPU's norm_rope_kernels.h on the GPU.
//
// Act is the activation storage type (float or bf16); weights, their gradients, the saved rstd and
// the rotary tables are fp32, and all arithmetic is fp32. One warp normalises one row; every sum's
// order depends on N and C only (never on alignment, which picks 16-byte or scalar accesses), so
// results are repeatable. Every launcher queues its kernels on `stream`, launches nothing for
// empty sizes, and throws Error (check_launch) if a launch is refused.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "backend/cuda/cuda_types.h"

namespace switchyard::backend::cuda {

// out[N,C] = inp * rstd * weight[C] per row, rstd = 1 / sqrt(mean(inp^2) + epsilon), written to
// rstd[N] (fp32). out may be inp.
template <typename Act>
void rmsnorm_forward(Act* out, float* rstd, const Act* inp, const float* weight, int N, int C,
                     float epsilon, cudaStream_t stream);

// Scratch bytes rmsnorm_backward needs for these sizes (0 when N or C is 0).
size_t rmsnorm_backward_workspace_bytes(int N, int C);

// dinp[N,C] ACCUMULATES rstd * (weight * dout - inp * rstd^2 * mean_c(weight * dout * inp)) per
// row; dweight[C] ACCUMULATES sum_n inp * rstd * dout. rstd[N] is rmsnorm_forward's. dweight is
// reduced deterministically and first: per-chunk partial sums into `workspace`
// (rmsnorm_backward_workspace_bytes bytes, any alignment of 4), then a second kernel adds the
// chunks in index order; dinp comes last, each element read before the same thread writes it, so
// dinp may be dout or inp.
template <typename Act>
void rmsnorm_backward(Act* dinp, float* dweight, const Act* dout, const Act* inp,
                      const float* weight, const float* rstd, int N, int C, void* workspace,
                      cudaStream_t stream);

// Rotates x in place: row n of x is `heads` heads of head_dim values (rows ldx elements apart, the
// rest of a row untouched), and in every head the pair (x[i], x[i + head_dim / 2]) becomes
// (x[i] c - x[i + head_dim / 2] s, x[i + head_dim / 2] c + x[i] s) with c = cos[p, i],
// s = sin[p, i], p = positions[n]; cos and sin are [table_rows, head_dim / 2]. With `transpose`, s
// is negated (the backward pass). head_dim is even. Positions are device data, the caller's to get
// right: a row whose position is outside [0, table_rows) becomes NaN rather than reading outside
// the tables.
template <typename Act>
void rope(Act* x, int64_t ldx, const float* cos, const float* sin, const int32_t* positions,
          int table_rows, int N, int heads, int head_dim, bool transpose, cudaStream_t stream);

}  // namespace switchyard::backend::cuda
