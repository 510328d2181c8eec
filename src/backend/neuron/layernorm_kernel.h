// LayerNorm forward and backward as NeuronCore tile programs (the LayerNorm ops of ops.h; epsilon
// 1e-5 unless given).
//
// Rows go on the 128 partitions, one row tile (128 rows x C) at a time, double buffered: the next
// tile's loads are issued before this tile's compute. Row statistics are per-partition columns in
// fp32: VectorE sums a row, ScalarE squares the centred row and sums it in the same instruction
// (activation_reduce with the negated mean as a per-partition bias), then takes rsqrt. Weight and
// bias are read once into every partition (a stride-0 DMA). The backward pass sums dout * xhat and
// dout over rows on TensorE (a ones column as the stationary operand), accumulating across all row
// tiles in PSUM, and adds the sums to the existing dweight / dbias once at the end.
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

inline constexpr float kLayerNormEpsilon = 1e-5f;

// out[N,C] = (inp - mean) * rstd * weight + bias per row; mean[N] and rstd[N] (1-row views, fp32
// in the backend) receive the row statistics. inp and out are HBM [N, C] views; weight and bias
// 1-row views of C elements. `compute` is the dtype of the row tiles in SBUF (kBF16 or kF32);
// rstd = 1 / sqrt(variance + epsilon).
void layernorm_forward(NeuronCore& core, const View& out, const View& mean, const View& rstd,
                       const View& inp, const View& weight, const View& bias, DType compute,
                       float epsilon = kLayerNormEpsilon);

// Accumulates the gradients of layernorm_forward:
//   dinp[N,C] += rstd * (dnorm - mean_c(dnorm) - xhat * mean_c(dnorm * xhat)),
//   dweight[C] += sum_n dout * xhat, dbias[C] += sum_n dout,
// with xhat = (inp - mean) * rstd and dnorm = weight * dout, from the statistics the forward pass
// saved. Shapes as in layernorm_forward; dweight and dbias are 1-row views of C elements.
void layernorm_backward(NeuronCore& core, const View& dinp, const View& dweight, const View& dbias,
                        const View& dout, const View& inp, const View& weight, const View& mean,
                        const View& rstd, DType compute);

}  // namespace switchyard::backend::neuron
