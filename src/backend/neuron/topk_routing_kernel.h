// Top-k routing and its backward pass as NeuronCore tile programs (the TopKRouting and
// TopKRoutingBackward ops of ops.h). Rows on partitions, 128 to a tile, a row's E logits along the
// free axis, fp32 tiles (routing_tiles.h).
//
// Forward: k rounds of "take the row maximum, find the lowest expert holding it, strike that
// expert out" on VectorE, each a handful of instructions over [rows, E]:
//   m   = max_e x[e]                     (tensor_reduce)
//   key = (x == m) * (E - e)             (the lowest expert at the maximum has the largest key)
//   r   = max_e key,  expert = E - r
//   x[e] = -inf where E - e == r         (select)
// then the weights are a softmax over the k maxima (ScalarE exp with its row sum fused). This
// gives the op's tie rule exactly (equal logits: the lower expert first), which bf16 logits need:
// they tie often. NKI's max8 / nc_find_index8 would take k <= 8 in fewer instructions, but the
// simulator does not model them and their result on equal values is not documented. Before the
// rounds, NaN logits become -FLT_MAX and -inf logits too, so that a struck-out expert (-inf)
// ranks below every candidate: the k ids are distinct and in range whatever the logits hold (a
// NaN ranks lowest here, where the CPU reference's insertion keeps one it met while its list was
// not full; rows without NaN agree).
//
// Backward: the softmax's gradient per choice, g[n, j] = w[n, j] (dw[n, j] - sum_i w[n, i]
// dw[n, i]), spread onto the experts through a one-hot tile [rows, E, k] and summed over the
// choices (repeated ids add up), then added to dlogits row by row (one rounding).
#pragma once

#include "backend/neuron/kernel_support.h"

namespace switchyard::backend::neuron {

// expert_ids [N, k] int32 and weights [N, k] fp32 from logits [N, E] (fp32 or bf16), all dense
// HBM tensors; 1 <= k <= E <= kMaxExperts.
void topk_routing_forward(NeuronCore& core, const View& expert_ids, const View& weights,
                          const View& logits);

// dlogits [N, E] (fp32 or bf16) += the gradient of the chosen experts' softmax given
// dweights [N, k] fp32, from the forward pass's weights [N, k] fp32 and expert_ids [N, k] int32.
// The ids must be in [0, E): one outside matches no expert of the one-hot tile and its gradient
// would vanish silently, so the backend checks them on the host first.
void topk_routing_backward(NeuronCore& core, const View& dlogits, const View& dweights,
                           const View& weights, const View& expert_ids);

}  // namespace switchyard::backend::neuron
