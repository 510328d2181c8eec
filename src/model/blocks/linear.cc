#include "model/blocks/linear.h"

namespace switchyard::model::blocks {

void linear_forward(const BlockContext& c, const Linear& l, const Tensor& out, const Tensor& inp) {
  c.backend.run(ops::Linear{.out = out, .inp = inp, .weight = l.weight.weight,
                            .bias = l.bias.value, .batch_invariant = c.batch_invariant()});
}

void linear_backward(const BlockContext& c, const Linear& l, const Tensor& dinp, const Tensor& dout,
                     const Tensor& inp) {
  c.backend.run(ops::LinearBackward{.dinp = dinp, .dweight = l.weight.grad, .dbias = l.bias.grad,
                                    .dout = dout, .inp = inp, .weight = l.weight.weight});
}

}  // namespace switchyard::model::blocks
