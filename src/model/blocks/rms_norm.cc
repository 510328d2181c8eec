#include "model/blocks/rms_norm.h"

namespace switchyard::model::blocks {

void rmsnorm_forward(const BlockContext& c, const RmsNorm& n, const Tensor& out, const Tensor& rstd,
                     const Tensor& inp) {
  c.backend.run(ops::RmsNorm{.out = out, .rstd = rstd, .inp = inp, .weight = n.weight.value,
                             .epsilon = n.epsilon});
}

void rmsnorm_backward(const BlockContext& c, const RmsNorm& n, const Tensor& dinp,
                      const Tensor& dout, const Tensor& inp, const Tensor& rstd) {
  c.ready_to_add(n.weight.grad);
  c.backend.run(ops::RmsNormBackward{.dinp = dinp, .dweight = n.weight.grad, .dout = dout,
                                     .inp = inp, .weight = n.weight.value, .rstd = rstd});
}

}  // namespace switchyard::model::blocks
