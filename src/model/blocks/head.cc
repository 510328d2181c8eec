#include "model/blocks/head.h"

#include "core/error.h"
#include "model/blocks/linear.h"

namespace switchyard::model::blocks {

void lm_head_forward(const BlockContext& c, const LmHead& h, const Tensor& inp,
                     const HeadActivations& acts) {
  Tensor rows = inp;
  if (!c.batch.all_rows_get_logits) {
    // A row gather is an embedding lookup with the activations as the table.
    c.backend.run(ops::Embedding{.out = acts.gathered, .ids = c.batch.logits_rows, .table = inp});
    rows = acts.gathered;
  }
  linear_forward(c, Linear{.weight = h.weight}, acts.logits, rows);
  if (!c.batch.targets.empty()) {
    require(c.batch.all_rows_get_logits, "a loss needs the logits of every row");
    c.backend.run(ops::CrossEntropy{.losses = acts.losses, .logits = acts.logits,
                                    .targets = c.batch.targets});
  }
}

void lm_head_backward(const BlockContext& c, const LmHead& h, const Tensor& dinp,
                      const Tensor& inp, const HeadActivations& acts, float loss_scale) {
  require(!c.batch.targets.empty(), "the backward pass needs a forward pass with targets");
  // Loss = mean over the N rows, so each row's loss has weight loss_scale / N.
  c.backend.run(ops::CrossEntropyBackward{.dlogits = acts.logits, .logits = acts.logits,
                                          .targets = c.batch.targets, .losses = acts.losses,
                                          .dloss = loss_scale / static_cast<float>(c.batch.rows)});
  linear_backward(c, Linear{.weight = h.weight}, dinp, acts.logits, inp, GradientWrite::kSet);
}

}  // namespace switchyard::model::blocks
