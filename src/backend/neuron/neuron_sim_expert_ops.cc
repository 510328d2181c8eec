// NeuronSimBackend's grouped expert products (ExpertLinear, ExpertLinearBackward): check the
// operands, read the offsets on the host (device memory is host memory), present the tensors to
// one launch and run expert_linear_kernel.h's tile programs. MXFP4 weights go to the chip as their
// packed code bytes and scale bytes (uint8 HBM tensors over the same memory) and are decoded there.
//
// Which experts have rows is data. In timing-only mode a GroupByExpert that ran as a tile program
// wrote nothing, so offsets that do not split the rows (zeroed memory) are replaced by a stand-in
// for timing: the A rows spread as evenly as they go over the first min(E, A) experts, as when
// each token's k choices are distinct and the tokens share no expert (a decode step of one token
// touches its k experts with one row each). In functional mode such offsets are an error.
#include <string>
#include <vector>

#include "backend/neuron/expert_linear_kernel.h"
#include "backend/neuron/kernel_launch.h"
#include "backend/neuron/neuron_sim_backend.h"
#include "backend/neuron/sim_operands.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

// Tile programs, named apart from the Backend members that launch them.
namespace kernels = ::switchyard::backend::neuron;

namespace {

struct ExpertShape {
  int64_t experts, out_features, in_features;  // E, OC, C
};

ExpertShape expert_shape(const std::string& at, const Tensor& weight) {
  require(weight.rank == 3 && weight.is_contiguous(),
          "{}: weight must be dense [E, OC, C] (experts, outputs, inputs), got {}", at,
          weight.describe());
  if (weight.dtype == DType::kMXFP4) {
    require(weight.scales != nullptr, "{}: MXFP4 weight {} has no scales", at, weight.describe());
  }
  return {weight.shape[0], weight.shape[1], weight.shape[2]};
}

// `t` is [rows, cols] (rows -1: any) in its own dtype.
void require_shape(const std::string& at, const Tensor& t, int64_t rows, int64_t cols,
                   const char* what) {
  require_tensor(t, t.dtype, {rows, cols}, (at + " " + what).c_str());
}

// The timing-only stand-in (see the top of the file): A rows over the first min(E, A) experts.
std::vector<int64_t> even_offsets(int64_t experts, int64_t rows) {
  const int64_t used = std::max<int64_t>(1, std::min(experts, rows));
  std::vector<int64_t> offsets(static_cast<size_t>(experts + 1), rows);
  for (int64_t e = 0; e < used; ++e) offsets[e] = e * rows / used;
  return offsets;
}

std::vector<int64_t> read_offsets(const std::string& at, const Tensor& t, int64_t experts,
                                  int64_t rows, ExecutionMode mode) {
  require(t.numel() == experts + 1 && t.is_contiguous(),
          "{}: offsets must be E + 1 = {} dense int32 values, got {}", at, experts + 1,
          t.describe());
  const int32_t* values = t.as<const int32_t>();
  std::vector<int64_t> offsets(values, values + experts + 1);
  const std::string problem = offsets_problem(offsets, experts, rows);
  if (problem.empty()) return offsets;
  require(mode == ExecutionMode::kTimingOnly,
          "{}: offsets {} (they split the A = {} rows among the E = {} experts: offsets[0] = 0, "
          "never decreasing, offsets[E] = A)",
          at, problem, rows, experts);
  return even_offsets(experts, rows);
}

ExpertWeights present_weights(Launch& l, const Tensor& weight, const ExpertShape& s) {
  ExpertWeights w;
  w.experts = s.experts;
  w.out_features = s.out_features;
  w.in_features = s.in_features;
  const int64_t rows = s.experts * s.out_features;
  if (weight.dtype != DType::kMXFP4) {
    w.dense = l.hbm(weight, "weight", {rows, s.in_features});
    return w;
  }
  w.codes = l.hbm(weight.data, DType::kU8, {rows, s.in_features / 2}, "weight_codes");
  w.scales = l.hbm(const_cast<uint8_t*>(weight.scales), DType::kU8,
                   {rows, s.in_features / dtype_block_elements(DType::kMXFP4)}, "weight_scales");
  return w;
}

}  // namespace

void NeuronSimBackend::run(const ops::ExpertLinear& op) {
  const std::string at = op_label("expert_linear");
  require_native_operands(at, op);
  const ExpertShape w = expert_shape(at, op.weight);
  require_shape(at, op.inp, -1, w.in_features, "inp");
  const int64_t A = op.inp.shape[0];
  require_shape(at, op.out, A, w.out_features, "out");
  if (!op.bias.empty()) require_shape(at, op.bias, w.experts, w.out_features, "bias");
  const std::vector<int64_t> offsets = read_offsets(at, op.offsets, w.experts, A, mode_);
  if (A == 0) return;
  Launch l(*core_);
  kernels::expert_linear_forward(*core_, l.hbm(op.out, "out"), l.hbm(op.inp, "inp"),
                                 present_weights(l, op.weight, w), l.optional(op.bias, "bias"),
                                 offsets, compute_);
  l.finish();
}

void NeuronSimBackend::run(const ops::ExpertLinearBackward& op) {
  const std::string at = op_label("expert_linear_backward");
  require(op.weight.dtype != DType::kMXFP4,
          "{}: weight {} is MXFP4; MXFP4 expert weights are frozen (inference only) and have no "
          "backward pass (train with fp32 or bf16 expert weights)",
          at, op.weight.describe());
  require_native_operands(at, op);
  const ExpertShape w = expert_shape(at, op.weight);
  const int64_t E = w.experts, OC = w.out_features, C = w.in_features;
  require_shape(at, op.inp, -1, C, "inp");
  const int64_t A = op.inp.shape[0];
  require_shape(at, op.dout, A, OC, "dout");
  require_tensor(op.dweight, DType::kF32, {E, OC, C}, (at + " dweight").c_str());
  if (!op.dinp.empty()) require_shape(at, op.dinp, A, C, "dinp");
  if (!op.dbias.empty()) require_shape(at, op.dbias, E, OC, "dbias");
  const std::vector<int64_t> offsets = read_offsets(at, op.offsets, E, A, mode_);
  if (A == 0) return;
  Launch l(*core_);
  kernels::expert_linear_backward(*core_, l.optional(op.dinp, "dinp"),
                                  l.hbm(op.dweight, "dweight", {E * OC, C}),
                                  l.optional(op.dbias, "dbias"), l.hbm(op.dout, "dout"),
                                  l.hbm(op.inp, "inp"), present_weights(l, op.weight, w), offsets,
                                  compute_);
  l.finish();
}

}  // namespace switchyard::backend::neuron
