#include "model/blocks/linear.h"

namespace switchyard::model::blocks {

void linear_forward(const BlockContext& c, const Linear& l, const Tensor& out, const Tensor& inp) {
  c.backend.run(ops::Linear{.out = out, .inp = inp, .weight = l.weight.weight,
                            .bias = l.bias.value, .batch_invariant = c.batch_invariant(),
                            .weight_stamp = c.weight_stamp(l.weight)});
}

void linear_backward(const BlockContext& c, const Linear& l, const Tensor& dinp, const Tensor& dout,
                     const Tensor& inp, GradientWrite dinp_write) {
  // The weight and bias gradients are set together or added to together.
  const bool fresh_weight = c.first_write(l.weight.grad);
  const bool fresh_bias = l.bias.grad.empty() ? fresh_weight : c.first_write(l.bias.grad);
  if (fresh_weight != fresh_bias) c.zero(fresh_weight ? l.weight.grad : l.bias.grad);
  c.backend.run(ops::LinearBackward{.dinp = dinp, .dweight = l.weight.grad, .dbias = l.bias.grad,
                                    .dout = dout, .inp = inp, .weight = l.weight.weight,
                                    .overwrite_dinp = dinp_write == GradientWrite::kSet,
                                    .overwrite_param_grads = fresh_weight && fresh_bias});
}

}  // namespace switchyard::model::blocks
