// A mixture of experts (gpt-oss's MLP): a router picks each row's top-k experts and weights them
// by a softmax over the chosen logits; every expert is a clamped SwiGLU MLP with biases; a row's
// output is the weighted sum of its experts' outputs.
//
// The rows are grouped by expert (ops.h, "mixture of experts") so that each chosen expert's
// weights are read once per pass however many rows chose it.
#pragma once

#include "model/blocks/linear.h"

namespace switchyard::model::blocks {

struct MixtureOfExperts {
  Linear router;                   // [E, C] with a bias [E]
  ParamRef gate_up, gate_up_bias;  // [E, 2I, C], [E, 2I]: gate and up rows interleaved
  ParamRef down, down_bias;        // [E, C, I], [E, C]
  int experts = 0, top_k = 0, intermediate = 0;
  float alpha = 1.702f, limit = 7.0f;  // the clamped SwiGLU's constants
};

// What the forward pass keeps for the backward pass (A = N * top_k assignments).
struct MoeActivations {
  Tensor router_logits;          // [N, E]
  Tensor expert_ids;             // [N, k] int32
  Tensor weights;                // [N, k] fp32
  Tensor order, rows, position;  // [A] int32: the grouped order (ops::GroupByExpert)
  Tensor offsets;                // [E + 1] int32
  Tensor gathered;               // [A, C]: the input rows in grouped order
  Tensor gate_up;                // [A, 2I]: the first products, before the SwiGLU
  Tensor act;                    // [A, I]: after it
  Tensor expert_out;             // [A, C]: each assignment's expert output, unweighted
};

// The backward pass's scratch, reusable across layers.
struct MoeScratch {
  Tensor drouter_logits;  // [N, E]
  Tensor dweights;        // [N, k] fp32
  Tensor dexpert_out;     // [A, C]
  Tensor dact;            // [A, I]
  Tensor dgate_up;        // [A, 2I]
  Tensor dgathered;       // [A, C]
};

// The router's load-balancing loss over all layers of a pass: each layer adds its statistics to
// `totals`; the loss and its gradient follow from the totals of every layer.
struct LoadBalancing {
  Tensor totals;     // [2, E] fp64 (ops::RouterLoadStats)
  float scale = 0;   // of the gradient: loss_scale * coefficient * E / R^2 (R rows over all layers)
};

// out[N, C] = the mixture applied to inp[N, C].
void moe_forward(const BlockContext& c, const MixtureOfExperts& m, const Tensor& out,
                 const Tensor& inp, const MoeActivations& acts);
// Adds this layer's routing to the load-balancing totals.
void moe_load_stats(const BlockContext& c, const MoeActivations& acts, const Tensor& totals);
// dinp (overwritten) = the input's gradient, with the load-balancing loss's part when
// balance.scale is not 0; parameter gradients += theirs.
void moe_backward(const BlockContext& c, const MixtureOfExperts& m, const Tensor& dinp,
                  const Tensor& dout, const Tensor& inp, const MoeActivations& acts,
                  const MoeScratch& scratch, const LoadBalancing& balance);

}  // namespace switchyard::model::blocks
