// LayerNorm (torch.nn.LayerNorm: gain and shift, biased variance), alone or fused with the
// residual add that feeds it.
#pragma once

#include "model/blocks/block_context.h"

namespace switchyard::model::blocks {

struct LayerNorm {
  ParamRef weight, bias;  // [C]
  float epsilon = 1e-5f;
};

// The statistics the backward pass reads.
struct NormStats {
  Tensor mean, rstd;  // [N] fp32
};

void layernorm_forward(const BlockContext& c, const LayerNorm& n, const Tensor& out,
                       const NormStats& stats, const Tensor& inp);
// residual = a + b, out = LayerNorm(residual).
void add_layernorm_forward(const BlockContext& c, const LayerNorm& n, const Tensor& residual,
                           const Tensor& out, const NormStats& stats, const Tensor& a,
                           const Tensor& b);
// dinp += the input's gradient; the gain's and shift's gradients += theirs.
void layernorm_backward(const BlockContext& c, const LayerNorm& n, const Tensor& dinp,
                        const Tensor& dout, const Tensor& inp, const NormStats& stats);

}  // namespace switchyard::model::blocks
