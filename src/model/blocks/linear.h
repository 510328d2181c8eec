// A linear layer, out = inp @ weight^T + bias, and its backward pass.
#pragma once

#include "model/blocks/block_context.h"

namespace switchyard::model::blocks {

struct Linear {
  ParamRef weight;  // [out, in]
  ParamRef bias;    // [out]; absent when the layer has none
};

void linear_forward(const BlockContext& c, const Linear& l, const Tensor& out, const Tensor& inp);
// dinp (optional: empty when the input needs no gradient) += dout @ weight; the weight's and the
// bias's gradients += their parts.
void linear_backward(const BlockContext& c, const Linear& l, const Tensor& dinp, const Tensor& dout,
                     const Tensor& inp);

}  // namespace switchyard::model::blocks
