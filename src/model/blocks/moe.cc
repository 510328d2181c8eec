#include "model/blocks/moe.h"

namespace switchyard::model::blocks {

namespace {

// Routing: the top-k experts of each row and the grouped order of the assignments.
void route(const BlockContext& c, const MixtureOfExperts& m, const Tensor& inp,
           const MoeActivations& acts) {
  linear_forward(c, m.router, acts.router_logits, inp);
  c.backend.run(ops::TopKRouting{.expert_ids = acts.expert_ids, .weights = acts.weights,
                                 .logits = acts.router_logits});
  c.backend.run(ops::GroupByExpert{.order = acts.order, .rows = acts.rows,
                                   .position = acts.position, .offsets = acts.offsets,
                                   .expert_ids = acts.expert_ids, .experts = m.experts});
}

// Every expert on its own rows: gate_up products, the clamped SwiGLU, down products.
void run_experts(const BlockContext& c, const MixtureOfExperts& m, const MoeActivations& acts) {
  c.backend.run(ops::ExpertLinear{.out = acts.gate_up, .inp = acts.gathered,
                                  .weight = m.gate_up.weight, .bias = m.gate_up_bias.value,
                                  .offsets = acts.offsets,
                                  .batch_invariant = c.batch_invariant()});
  c.backend.run(ops::ClampedSwiglu{.out = acts.act, .inp = acts.gate_up, .alpha = m.alpha,
                                   .limit = m.limit});
  c.backend.run(ops::ExpertLinear{.out = acts.expert_out, .inp = acts.act,
                                  .weight = m.down.weight, .bias = m.down_bias.value,
                                  .offsets = acts.offsets,
                                  .batch_invariant = c.batch_invariant()});
}

}  // namespace

void moe_forward(const BlockContext& c, const MixtureOfExperts& m, const Tensor& out,
                 const Tensor& inp, const MoeActivations& acts) {
  route(c, m, inp, acts);
  // A row gather is an embedding lookup with the activations as the table.
  c.backend.run(ops::Embedding{.out = acts.gathered, .ids = acts.rows, .table = inp});
  run_experts(c, m, acts);
  c.backend.run(ops::ExpertCombine{.out = out, .expert_out = acts.expert_out,
                                   .weights = acts.weights, .position = acts.position});
}

void moe_load_stats(const BlockContext& c, const MoeActivations& acts, const Tensor& totals) {
  c.backend.run(ops::RouterLoadStats{.totals = totals, .logits = acts.router_logits,
                                     .expert_ids = acts.expert_ids});
}

void moe_backward(const BlockContext& c, const MixtureOfExperts& m, const Tensor& dinp,
                  const Tensor& dout, const Tensor& inp, const MoeActivations& acts,
                  const MoeScratch& s, const LoadBalancing& balance) {
  c.zero(s.dexpert_out);
  c.zero(s.dweights);
  c.backend.run(ops::ExpertCombineBackward{.dexpert_out = s.dexpert_out, .dweights = s.dweights,
                                           .dout = dout, .expert_out = acts.expert_out,
                                           .weights = acts.weights, .position = acts.position});
  c.zero(s.dact);
  c.ready_to_add(m.down.grad);
  c.ready_to_add(m.down_bias.grad);
  c.backend.run(ops::ExpertLinearBackward{.dinp = s.dact, .dweight = m.down.grad,
                                          .dbias = m.down_bias.grad, .dout = s.dexpert_out,
                                          .inp = acts.act, .weight = m.down.weight,
                                          .offsets = acts.offsets});
  c.zero(s.dgate_up);
  c.backend.run(ops::ClampedSwigluBackward{.dinp = s.dgate_up, .inp = acts.gate_up,
                                           .dout = s.dact, .alpha = m.alpha, .limit = m.limit});
  c.zero(s.dgathered);
  c.ready_to_add(m.gate_up.grad);
  c.ready_to_add(m.gate_up_bias.grad);
  c.backend.run(ops::ExpertLinearBackward{.dinp = s.dgathered, .dweight = m.gate_up.grad,
                                          .dbias = m.gate_up_bias.grad, .dout = s.dgate_up,
                                          .inp = acts.gathered, .weight = m.gate_up.weight,
                                          .offsets = acts.offsets});
  // The gather's backward pass scatters each assignment's gradient back to its row.
  c.zero(dinp);
  c.backend.run(ops::EmbeddingBackward{.dtable = dinp, .dout = s.dgathered, .ids = acts.rows});
  // The router: through the chosen experts' weights, and the load-balancing loss.
  c.zero(s.drouter_logits);
  c.backend.run(ops::TopKRoutingBackward{.dlogits = s.drouter_logits, .dweights = s.dweights,
                                         .weights = acts.weights, .expert_ids = acts.expert_ids});
  if (balance.scale != 0.0f) {
    c.backend.run(ops::RouterLoadBackward{.dlogits = s.drouter_logits,
                                          .logits = acts.router_logits, .totals = balance.totals,
                                          .scale = balance.scale});
  }
  linear_backward(c, m.router, dinp, s.drouter_logits, inp, GradientWrite::kAdd);
}

}  // namespace switchyard::model::blocks
