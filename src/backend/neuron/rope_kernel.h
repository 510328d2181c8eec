// Rotary position embeddings as a NeuronCore tile program (the Rope op of ops.h, forward and
// transposed): x is rotated in place, row by row, by the cos and sin table rows of its position.
//
// A row's heads are cut into G groups of H / G heads, and each (row, group) pair takes a partition:
// decode steps have few rows (32 rows of gpt-oss-20b's 64 + 8 rotated heads become 128 partitions
// of 18 heads each), so the engines' lanes fill, and a partition's free size stays at most 4096
// elements. G is the smallest divisor of H that keeps that size, raised to the largest divisor
// that still fits 128 / N partitions when N < 128. Tiles of up to 32 rows put a row's groups on
// consecutive partitions and move a row per DMA (all at once over the 16 queues); larger tiles
// put a group's rows on consecutive partitions and move a group per DMA (see rope_kernel.cc for
// why the choice). The cos and sin rows come in by indirect DMA (a gather by each partition's
// position; in the row-per-DMA layout TensorE first repeats the rows' positions onto their
// groups' partitions). The rotation of each head's halves (lo, hi) is six products and sums over
// [partitions, heads, head_dim / 2] views, the cos and sin rows broadcast over the heads: GpSimd
// forms the two sin products, VectorE the rest:
//   forward:    lo' = lo c - hi s,  hi' = hi c + lo s
//   transposed: lo' = lo c + hi s,  hi' = hi c - lo s
// in the compute dtype (bf16 products, as the model's reference computes them).
#pragma once

#include <cstdint>

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// Whether the program takes heads of this size: an even head_dim of at most 4096, and the heads
// splittable into at most 128 groups of at most 4096 elements.
bool rope_supported(int64_t heads, int64_t head_dim);

// Rotates x in place. x: HBM rows [N, heads * head_dim] (each row contiguous, any row stride: the
// q and k heads of a packed projection), fp32 or bf16; cos, sin: HBM [positions, head_dim / 2]
// float tables with contiguous rows; positions: HBM int32, N contiguous values ([N, 1]), each a
// row of the tables (the gather rejects others). head_dim even and at most 4096.
void rope(NeuronCore& core, const View& x, const View& cos, const View& sin,
          const View& positions, int64_t heads, int64_t head_dim, bool transpose, DType compute);

}  // namespace switchyard::backend::neuron
