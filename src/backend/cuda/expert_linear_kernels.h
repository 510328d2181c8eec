// Every expert's linear layer over its own rows (ops::ExpertLinear, ops::ExpertLinearBackward) on
// NVIDIA GPUs: grouped matrix products whose groups (the experts' row ranges) are known only on
// the device.
//
// Rows are in grouped order: expert e's are [offsets[e], offsets[e + 1]) of the A rows, and its
// weight[e] is [OC, C] (PyTorch nn.Linear layout). offsets (E + 1 int32) are device data: they are
// clamped into [0, A] and made non-decreasing on the device, so a bad table never makes a kernel
// write outside its operands (it just leaves rows unwritten).
//
// The products are tiled fp32 FMA kernels (SIMT, no tensor cores): a block computes a 64 x 64
// tile of one expert's outputs, streaming 32-deep slices of the inputs and of the weights through
// shared memory, the weights decoded to fp32 there (bf16 widened; MXFP4 as E2M1 value times its
// block's E8M0 scale, both exact). Each output is one thread's fp32 sum over the input channels
// in ascending order, so a row's result never depends on the other rows or on how many there are
// (batch-invariant), and every result is repeatable. Act is the activation type (float or bf16),
// rounded to once per output; biases and parameter gradients are fp32.
//
// Every launcher queues its kernels on `stream`, launches nothing for empty sizes, and throws
// Error (check_launch) if a launch is refused.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "backend/cuda/cuda_types.h"

namespace switchyard::backend::cuda {

// How weight[E, OC, C] is stored.
enum class WeightFormat {
  kF32,
  kBF16,
  // 32-value blocks along C: 16 bytes of E2M1 codes (low nibble first) each, and one E8M0 scale
  // byte per block in `scales` ([E, OC, C / 32]). C must be a multiple of 32.
  kMXFP4,
};

struct ExpertWeights {
  WeightFormat format = WeightFormat::kF32;
  const void* data = nullptr;
  const uint8_t* scales = nullptr;  // MXFP4 only
};

// out[A,OC] rows of expert e = inp rows of expert e @ weight[e]^T + bias[e] (bias [E,OC] fp32, may
// be null). Rows outside every expert's range are not written.
template <typename Act>
void expert_linear_forward(Act* out, const Act* inp, const ExpertWeights& weight,
                           const float* bias, const int32_t* offsets, int A, int E, int C, int OC,
                           cudaStream_t stream);

// Per expert e over its rows: dinp[A,C] ACCUMULATES dout @ weight[e] (skipped when dinp is null);
// dweight[E,OC,C] ACCUMULATES dout^T @ inp; dbias[E,OC] ACCUMULATES the column sums of dout
// (skipped when dbias is null). weight is fp32 or bf16 (trainable weights or their bf16 copy). An
// expert without rows gets no gradient. dweight and dbias sums run over the expert's rows in
// order, one thread per element: deterministic.
template <typename Act>
void expert_linear_backward(Act* dinp, float* dweight, float* dbias, const Act* dout,
                            const Act* inp, const ExpertWeights& weight, const int32_t* offsets,
                            int A, int E, int C, int OC, cudaStream_t stream);

}  // namespace switchyard::backend::cuda
