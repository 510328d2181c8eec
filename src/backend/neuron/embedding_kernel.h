// Token + position embedding (the encoder) forward and backward as NeuronCore tile programs
// (backend.h semantics: the backward pass accumulates into dwte and dwpe).
//
// Rows (b, t) go on the partitions, 128 per tile; the token ids of all tiles are read once into
// an SBUF int32 [128, tiles] tile whose columns index the DMA gathers (forward) and accumulating
// scatters (backward) of wte rows. A tile's position rows are at most two contiguous runs of wpe
// (plain DMAs) when T is large; otherwise GpSimd computes each row's position (b*T + t) mod T with
// iota and arithmetic and a gather fetches them. When T divides 128 every tile has the same
// positions, so that tile is built once. dwpe sums dout over the batch: for each block of up to
// 128 positions, the B rows of dout at those positions load side by side ([t, b, C]) and VectorE
// adds them in halves (a tree), in fp32.
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// out[B*T, C] = wte[tokens[b*T + t]] + wpe[t]. tokens: HBM int32 tensor of B*T contiguous ids in
// [0, V); wte: HBM [V, C]; wpe: HBM [maxT, C] with maxT >= T; out: HBM [B*T, C]. `compute` is the
// dtype of the row tiles in SBUF (kBF16 or kF32).
void encoder_forward(NeuronCore& core, const View& out, const View& tokens, const View& wte,
                     const View& wpe, int B, int T, DType compute);

// dwte[tokens[b*T + t]] += dout[b*T + t] (repeated tokens add up) and dwpe[t] += sum over b of
// dout[b*T + t]. dwte: HBM [V, C], dwpe: HBM [maxT, C] (rows T.. untouched), dout: HBM [B*T, C].
void encoder_backward(NeuronCore& core, const View& dwte, const View& dwpe, const View& dout,
                      const View& tokens, int B, int T, DType compute);

}  // namespace switchyard::backend::neuron
