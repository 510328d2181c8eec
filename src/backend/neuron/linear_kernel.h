// The linear layer (the Linear and LinearBackward ops of ops.h) as tile programs.
//
// Every product is the core's GEMM tile program (neuron/gemm_kernel.h), which streams the bigger
// operand through TensorE once and keeps the smaller one in SBUF. At gpt2-124m sizes (N = B*T =
// 256 rows) every linear layer is bound by reading the fp32 weight (or, for dweight, reading and
// writing the fp32 gradient) from HBM, so the program's job is to read each of those exactly once
// and keep the HBM busy from start to end. The forward pass reads inp and the weight transposed
// (K = C on partitions); dinp reads dout transposed; dweight takes dout and inp as they are
// (K = N on partitions) and adds dbias as the column sums of dout.
//
// Shapes: N rows (tokens), C input channels, OC output channels; 2-D HBM views [rows, cols].
// Activations (inp, out, dout, dinp) may be bf16 or fp32 in HBM; weight, bias and their gradients
// are normally fp32 (any float dtype works: DMA casts on the way). `compute` (kBF16 or kF32) is
// the dtype of the matmul operands in SBUF; PSUM accumulation is fp32.
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// out[N, OC] = inp[N, C] @ weight[OC, C]^T + bias[1, OC]. `bias` may be an empty View() (no
// bias). The bias joins each output tile's PSUM accumulation group as one extra matmul of a ones
// row against the bias row (in bf16 as a hi + lo pair of rows, so it is exact to ~2^-16).
void linear_forward(NeuronCore& core, const View& out, const View& inp, const View& weight,
                    const View& bias, DType compute);

// dinp[N, C] += dout[N, OC] @ weight[OC, C]; dweight[OC, C] += dout^T @ inp[N, C];
// dbias[1, OC] += column sums of dout. They accumulate into what the views hold, except where
// `overwrite` says to set them (ops::LinearBackward's flags: then the old values are not read).
// `dinp` and `dbias` may be empty View()s (not needed).
struct LinearGradientWrites {
  bool set_dinp = false;
  bool set_params = false;  // dweight and dbias
};
void linear_backward(NeuronCore& core, const View& dinp, const View& dweight, const View& dbias,
                     const View& dout, const View& inp, const View& weight, DType compute,
                     LinearGradientWrites overwrite = {});

}  // namespace switchyard::backend::neuron
