// The optimizer kernels of the trn*-sim backend as tile programs: the sum of squares behind the
// global gradient norm, and the AdamW update. Both stream flat fp32 tensors through SBUF in
// contiguous [128, F] blocks (fill_kernel.h), loads running ahead of compute on their own DMA
// queues.
#pragma once

#include <cstdint>

#include "backend/backend.h"
#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// Sum of x[i]^2 over x (HBM, contiguous elements, any float dtype). ScalarE squares each block with
// a fused free-axis sum into one fp32 column per block, VectorE sums the columns per partition,
// and TensorE sums the 128 partitions (a ones column as the stationary operand); the kernel writes
// that single fp32 value to a small HBM tensor of its own, which the host reads back. All sums are
// fp32 on the chip (expect ~1e-6 relative error against a double sum), returned as double.
double sum_of_squares(NeuronCore& core, const View& x);

// Sum of x[i] over x, by the same tile program as sum_of_squares (ScalarE's identity in place of
// the square): a micro-batch's loss summed on the chip.
double sum_of_elements(NeuronCore& core, const View& x);

// One AdamW update of params[N] (in place, as m[N] and v[N]) from grads[N] * step.grad_scale, as
// the AdamW op (ops.h) and cpu::adamw_update: decoupled weight decay, bias corrections. All four
// tensors fp32 in HBM with N contiguous elements each. With params_copy (N contiguous elements of
// any float dtype, e.g. bf16) the updated parameters are also stored there, rounded. HBM-bound on
// the chip: 28 bytes move per element (plus the copy's), and the 10-11 instructions per block are
// split between VectorE, ScalarE and GpSimd so that none of them is the bottleneck.
void adamw_update(NeuronCore& core, const View& params, const View& grads, const View& m,
                  const View& v, int64_t N, const AdamWStep& step,
                  const View& params_copy = View());

}  // namespace switchyard::backend::neuron
