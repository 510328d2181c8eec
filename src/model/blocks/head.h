// The language-model head: logits for the rows that want them, and the cross-entropy loss.
#pragma once

#include "model/blocks/block_context.h"

namespace switchyard::model::blocks {

struct LmHead {
  ParamRef weight;  // [V, C] (GPT-2: the token embedding, tied)
};

struct HeadActivations {
  Tensor gathered;  // [R, C]: the rows that want logits, when not all rows do
  Tensor logits;    // [R, V]
  Tensor losses;    // [N] fp32, when the batch has targets
};

// logits of the batch's logits rows from inp[N, C]; with targets (every row then has logits), the
// per-row losses too.
void lm_head_forward(const BlockContext& c, const LmHead& h, const Tensor& inp,
                     const HeadActivations& acts);
// dinp (overwritten) = the gradient of (loss_scale * mean loss) wrt inp; the weight's gradient +=
// its part. The logits become their gradient in place.
void lm_head_backward(const BlockContext& c, const LmHead& h, const Tensor& dinp,
                      const Tensor& inp, const HeadActivations& acts, float loss_scale);

}  // namespace switchyard::model::blocks
