#include "model/blocks/mlp.h"

namespace switchyard::model::blocks {

void dense_mlp_forward(const BlockContext& c, const DenseMlp& m, const Tensor& out,
                       const Tensor& inp, const MlpActivations& acts) {
  c.backend.run(ops::LinearGelu{.pre = acts.pre, .out = acts.act, .inp = inp,
                                .weight = m.fc.weight.weight, .bias = m.fc.bias.value,
                                .batch_invariant = c.batch_invariant(),
                                .weight_stamp = c.weight_stamp(m.fc.weight)});
  linear_forward(c, m.proj, out, acts.act);
}

void dense_mlp_backward(const BlockContext& c, const DenseMlp& m, const Tensor& dinp,
                        const Tensor& dout, const Tensor& inp, const MlpActivations& acts,
                        const MlpScratch& scratch) {
  linear_backward(c, m.proj, scratch.dact, dout, acts.act, GradientWrite::kSet);
  c.zero(scratch.dpre);
  c.backend.run(ops::GeluBackward{.dinp = scratch.dpre, .inp = acts.pre, .dout = scratch.dact});
  linear_backward(c, m.fc, dinp, scratch.dpre, inp, GradientWrite::kSet);
}

}  // namespace switchyard::model::blocks
