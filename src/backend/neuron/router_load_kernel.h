// The router's load-balancing statistics and their backward pass as NeuronCore tile programs (the
// RouterLoadStats and RouterLoadBackward ops of ops.h). Rows on partitions, 128 to a tile, a row's
// E logits on the free axis in fp32 tiles (routing_tiles.h); each row's softmax over all E experts
// is a row maximum (VectorE), exp(x - max) with its row sum fused (ScalarE) and a division.
//
// The op's totals are fp64, which no engine or DMA of the chip holds. As the sum-of-squares
// program does (optimizer_kernel.h), the statistics program sums in fp32 on the chip (TensorE
// against a ones column, accumulating every row tile in PSUM; counts are exact), writes the 2E sums
// to a small HBM tensor of its own and returns them, and the backend adds them to the fp64 totals
// on the host. The backward pass takes the counts the other way: the backend narrows totals[0] to
// an fp32 row (exact: counts stay far below 2^24) that the program broadcasts onto every partition.
#pragma once

#include <vector>

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// The sums of one launch over logits [N, E] (fp32 or bf16) and expert_ids [N, k] int32 (each in
// [0, E): the backend checks them), dense HBM tensors: [0, E) the assignments to each expert,
// [E, 2E) each expert's softmax probability summed over the rows. 1 <= E <= kMaxExperts,
// k * E <= kMaxOneHotCells.
std::vector<double> router_load_stats(NeuronCore& core, const View& logits,
                                      const View& expert_ids);

// dlogits [N, E] (fp32 or bf16) += scale * p * (counts - sum_e counts[e] p[e]), p =
// softmax(logits[n]), from logits [N, E] and counts [1, E] fp32, dense HBM tensors.
void router_load_backward(NeuronCore& core, const View& dlogits, const View& logits,
                          const View& counts, float scale);

}  // namespace switchyard::backend::neuron
