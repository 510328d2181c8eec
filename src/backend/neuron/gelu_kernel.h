// GELU (tanh approximation) forward and backward as NeuronCore tile programs (the Gelu and
// GeluBackward ops of ops.h: the backward pass accumulates into dinp).
//
// Both are elementwise over a flat tensor, cut by flat_blocks into [128, F] blocks (F up to
// kGeluBlockCols; kGeluBackwardBlockCols for the backward pass, which keeps three blocks in
// flight) plus a tail row, buffered so that the next block loads while this one computes. The forward pass is one ScalarE gelu_tanh activation per block. The backward pass
// builds the exact derivative of the tanh form from sigmoids on ScalarE (0.5 (1 + tanh(u)) =
// sigmoid(2u)) and products on VectorE and GpSimd, as cpu_kernels.h's gelu_backward:
//   gelu'(x) = s (1 + x y'(x) (1 - s)),  s = sigmoid(y), y = 2 sqrt(2/pi) (x + 0.044715 x^3),
// with 1 - s taken as sigmoid(-y) rather than by a cancelling subtraction.
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

inline constexpr int64_t kGeluBlockCols = 2048;
inline constexpr int64_t kGeluBackwardBlockCols = 1024;

// out[N] = gelu(inp[N]); out and inp are HBM views of N contiguous elements (bf16 or fp32).
// `compute` is the dtype of the tiles in SBUF (kBF16 or kF32).
void gelu_forward(NeuronCore& core, const View& out, const View& inp, DType compute);

// dinp[N] += gelu'(inp) * dout, all HBM views of N contiguous elements.
void gelu_backward(NeuronCore& core, const View& dinp, const View& inp, const View& dout,
                   DType compute);

}  // namespace switchyard::backend::neuron
