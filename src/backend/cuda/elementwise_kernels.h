// Elementwise CUDA kernels: GELU and its backward pass, residual adds, bias gradients (column
// sums) and the conversions between fp32 and bf16.
//
// Act is the activation storage type (float or bf16); arithmetic is fp32 in registers, rounded to
// Act (to nearest even) on store. Pointers are device pointers with only element alignment
// guaranteed: 16-byte accesses are used where every pointer involved allows them, scalar ones
// otherwise, with the same arithmetic either way. Every launcher queues its kernels on `stream`,
// launches nothing for empty sizes, and throws Error (check_launch) if a launch is refused.
// The device helpers all kernel files share are in device_helpers.cuh.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "backend/cuda/cuda_types.h"

namespace switchyard::backend::cuda {

// out[N] = gelu(inp[N]), tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), evaluated as
// x * sigmoid(2u) like the CPU kernel. out may be inp.
template <typename Act>
void gelu_forward(Act* out, const Act* inp, size_t N, cudaStream_t stream);

// dinp[N] ACCUMULATES gelu'(inp) * dout, the exact derivative of the tanh form. dinp may be dout.
template <typename Act>
void gelu_backward(Act* dinp, const Act* inp, const Act* dout, size_t N, cudaStream_t stream);

// out[N] = a + b. out may be a or b.
template <typename Act>
void residual_forward(Act* out, const Act* a, const Act* b, size_t N, cudaStream_t stream);

// dst[N] += src (the backward pass of a residual add, once per branch).
template <typename Act>
void accumulate(Act* dst, const Act* src, size_t N, cudaStream_t stream);

// Scratch bytes bias_backward needs for these sizes (0 when N or OC is 0).
size_t bias_backward_workspace_bytes(int N, int OC);

// dbias[OC] (fp32) ACCUMULATES the column sums of dout[N,OC]. Deterministic: rows are split into
// chunks that depend on N only; per-chunk partial sums go to `workspace`
// (bias_backward_workspace_bytes(N, OC) bytes, any alignment of 4), then a second kernel adds the
// chunks in index order.
template <typename Act>
void bias_backward(float* dbias, const Act* dout, int N, int OC, void* workspace,
                   cudaStream_t stream);

// dst[N] = src[N] rounded to nearest even bf16 (ops::Cast; the weights' copy the matrix products
// read). dst must not overlap src.
void convert_to_bf16(bf16* dst, const float* src, size_t N, cudaStream_t stream);

// dst[N] = src[N] widened to fp32 (exact). dst must not overlap src.
void convert_to_f32(float* dst, const bf16* src, size_t N, cudaStream_t stream);

}  // namespace switchyard::backend::cuda
