// RMSNorm forward and backward as NeuronCore tile programs (the RmsNorm ops of ops.h).
//
// Laid out as the LayerNorm programs are (layernorm_kernel.h): rows on the 128 partitions, one
// row tile (128 rows x C) at a time with the next tile's load in flight, fp32 row statistics as
// per-partition columns. The forward pass sums the squares on ScalarE (activation_reduce) and takes
// rsqrt; the output is one ScalarE scaling and a VectorE product with the weight. The backward pass
// sums dout * xhat over rows on TensorE against a ones column, accumulating across row tiles in
// PSUM, and adds the sums to dweight once at the end.
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// out[N,C] = inp * rstd * weight per row, rstd = 1 / sqrt(mean(inp^2) + epsilon); rstd[N] (a 1-row
// view, fp32 in the backend) receives the statistic. inp and out are HBM [N, C] views; weight a
// 1-row view of C elements. `compute` is the dtype of the row tiles in SBUF (kBF16 or kF32).
void rmsnorm_forward(NeuronCore& core, const View& out, const View& rstd, const View& inp,
                     const View& weight, DType compute, float epsilon);

// Accumulates the gradients of rmsnorm_forward:
//   dinp[N,C] += rstd * (dnorm - xhat * mean_c(dnorm * xhat)),  dweight[C] += sum_n dout * xhat,
// with xhat = inp * rstd and dnorm = weight * dout, from the rstd the forward pass saved.
void rmsnorm_backward(NeuronCore& core, const View& dinp, const View& dweight, const View& dout,
                      const View& inp, const View& weight, const View& rstd, DType compute);

}  // namespace switchyard::backend::neuron
