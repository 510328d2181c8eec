#include "model/blocks/norm.h"

namespace switchyard::model::blocks {

void layernorm_forward(const BlockContext& c, const LayerNorm& n, const Tensor& out,
                       const NormStats& stats, const Tensor& inp) {
  c.backend.run(ops::LayerNorm{.out = out, .mean = stats.mean, .rstd = stats.rstd, .inp = inp,
                               .weight = n.weight.value, .bias = n.bias.value,
                               .epsilon = n.epsilon});
}

void add_layernorm_forward(const BlockContext& c, const LayerNorm& n, const Tensor& residual,
                           const Tensor& out, const NormStats& stats, const Tensor& a,
                           const Tensor& b) {
  c.backend.run(ops::AddLayerNorm{.residual = residual, .out = out, .mean = stats.mean,
                                  .rstd = stats.rstd, .a = a, .b = b, .weight = n.weight.value,
                                  .bias = n.bias.value, .epsilon = n.epsilon});
}

void layernorm_backward(const BlockContext& c, const LayerNorm& n, const Tensor& dinp,
                        const Tensor& dout, const Tensor& inp, const NormStats& stats) {
  c.ready_to_add(n.weight.grad);
  c.ready_to_add(n.bias.grad);
  c.backend.run(ops::LayerNormBackward{.dinp = dinp, .dweight = n.weight.grad,
                                       .dbias = n.bias.grad, .dout = dout, .inp = inp,
                                       .weight = n.weight.value, .mean = stats.mean,
                                       .rstd = stats.rstd});
}

}  // namespace switchyard::model::blocks
