// A linear layer, out = inp @ weight^T + bias, and its backward pass.
#pragma once

#include "model/blocks/block_context.h"

namespace switchyard::model::blocks {

struct Linear {
  ParamRef weight;  // [out, in]
  ParamRef bias;    // [out]; absent when the layer has none
};

// Whether a backward pass adds an input's gradient to what its buffer holds or sets the buffer.
enum class GradientWrite { kAdd, kSet };

void linear_forward(const BlockContext& c, const Linear& l, const Tensor& out, const Tensor& inp);
// dinp (optional: empty when the input needs no gradient) += dout @ weight, or = with kSet; the
// weight's and the bias's gradients += their parts (set on their first write in a step that did
// not zero them, BlockContext::first_write).
void linear_backward(const BlockContext& c, const Linear& l, const Tensor& dinp, const Tensor& dout,
                     const Tensor& inp, GradientWrite dinp_write);

}  // namespace switchyard::model::blocks
