// gpt-oss's clamped SwiGLU forward and backward as NeuronCore tile programs (the ClampedSwiglu
// ops of ops.h: gate and up interleaved in the input's columns; the backward pass accumulates).
//
// Rows go on the partitions, 128 at a time, and columns in chunks of at most kSwigluChunk outputs
// (2 x that many inputs), each chunk loaded whole and its gate and up columns read as stride-2
// views in SBUF. The clamps are VectorE/GpSimd min/max, the sigmoid a ScalarE activation; the
// backward pass builds the clamps' masks from comparisons (1 or 0) and writes the two gradients
// back into the interleaved columns of the loaded dinp chunk before storing it.
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

inline constexpr int64_t kSwigluChunk = 1024;

// out[A, I] = (u + 1) * g * sigmoid(alpha * g) with g = min(inp[:, 2i], limit) and
// u = clamp(inp[:, 2i + 1], -limit, limit); inp is an HBM [A, 2I] view, out [A, I].
void clamped_swiglu_forward(NeuronCore& core, const View& out, const View& inp, float alpha,
                            float limit, DType compute);

// dinp[A, 2I] += the gradient of clamped_swiglu_forward given dout[A, I] (zero where a clamp
// held the value; the bounds pass the gradient, as torch.clamp's do).
void clamped_swiglu_backward(NeuronCore& core, const View& dinp, const View& inp,
                             const View& dout, float alpha, float limit, DType compute);

}  // namespace switchyard::backend::neuron
