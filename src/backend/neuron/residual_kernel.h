// Residual add and gradient accumulation as NeuronCore tile programs (the Add and Accumulate ops
// of ops.h).
//
// Elementwise over flat tensors cut by flat_blocks into [128, F] blocks (F up to
// kResidualBlockCols) plus a tail row: both operands of a block load spread over several DMA
// queues, the next block's loads are issued before this block's add, and each add is split by
// columns between VectorE and GpSimd in proportion to their throughput for the tile dtype.
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

inline constexpr int64_t kResidualBlockCols = 4096;

// out[N] = a[N] + b[N]: HBM views of N contiguous elements each (bf16 or fp32). `compute` is the
// dtype of the tiles in SBUF (kBF16 or kF32).
void residual_forward(NeuronCore& core, const View& out, const View& a, const View& b,
                      DType compute);

// dst[N] += src[N] (the backward pass of a residual add, for each branch).
void accumulate(NeuronCore& core, const View& dst, const View& src, DType compute);

}  // namespace switchyard::backend::neuron
