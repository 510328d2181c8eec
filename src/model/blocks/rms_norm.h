// RMSNorm (gains only, no mean subtraction), as gpt-oss normalises before each block and the head.
#pragma once

#include "model/blocks/block_context.h"

namespace switchyard::model::blocks {

struct RmsNorm {
  ParamRef weight;  // [C]
  float epsilon = 1e-5f;
};

// out = RmsNorm(inp); rstd[N] keeps each row's reciprocal root mean square for the backward pass.
void rmsnorm_forward(const BlockContext& c, const RmsNorm& n, const Tensor& out, const Tensor& rstd,
                     const Tensor& inp);
// dinp += the input's gradient; the gain's gradient += its part.
void rmsnorm_backward(const BlockContext& c, const RmsNorm& n, const Tensor& dinp,
                      const Tensor& dout, const Tensor& inp, const Tensor& rstd);

}  // namespace switchyard::model::blocks
