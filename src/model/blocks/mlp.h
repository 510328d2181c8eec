// GPT-2's MLP: a linear layer to the hidden width, tanh-GELU, a linear layer back.
#pragma once

#include "model/blocks/linear.h"

namespace switchyard::model::blocks {

struct DenseMlp {
  Linear fc;    // [hidden, C]
  Linear proj;  // [C, hidden]
};

struct MlpActivations {
  Tensor pre;  // [N, hidden]: fc's output, before the GELU
  Tensor act;  // [N, hidden]: after it
};

struct MlpScratch {
  Tensor dact, dpre;  // [N, hidden]
};

void dense_mlp_forward(const BlockContext& c, const DenseMlp& m, const Tensor& out,
                       const Tensor& inp, const MlpActivations& acts);
// dinp (overwritten) = the input's gradient; parameter gradients += theirs.
void dense_mlp_backward(const BlockContext& c, const DenseMlp& m, const Tensor& dinp,
                        const Tensor& dout, const Tensor& inp, const MlpActivations& acts,
                        const MlpScratch& scratch);

}  // namespace switchyard::model::blocks
