#include "backend/backend.h"

#include <cmath>
#include <vector>

#include "backend/gradient_clipping.h"
#include "backend/host_fallback.h"
#include "core/error.h"

namespace switchyard::backend {

const char* op_name(OpKind kind) {
  switch (kind) {
#define SWITCHYARD_OP_NAME(Op, name) \
  case OpKind::k##Op:                \
    return #name;
    SWITCHYARD_OPS(SWITCHYARD_OP_NAME)
#undef SWITCHYARD_OP_NAME
  }
  return "?";
}

namespace ops {
float AttentionSpec::effective_scale() const {
  return scale != 0.0f ? scale : 1.0f / std::sqrt(static_cast<float>(head_dim));
}
}  // namespace ops

bool Backend::supports(OpKind, std::span<const DType>) const { return false; }

// ---- default ops: composites compose, everything else runs the CPU reference ----

void Backend::run(const ops::LinearGelu& op) {
  run(ops::Linear{.out = op.pre, .inp = op.inp, .weight = op.weight, .bias = op.bias,
                  .batch_invariant = op.batch_invariant, .weight_stamp = op.weight_stamp});
  run(ops::Gelu{.out = op.out, .inp = op.pre});
}

void Backend::run(const ops::AddLayerNorm& op) {
  run(ops::Add{.out = op.residual, .a = op.a, .b = op.b});
  run(ops::LayerNorm{.out = op.out, .mean = op.mean, .rstd = op.rstd, .inp = op.residual,
                     .weight = op.weight, .bias = op.bias, .epsilon = op.epsilon});
}

#define SWITCHYARD_HOST_RUN(Op, name) \
  void Backend::run(const ops::Op& op) { run_on_host(op); }
SWITCHYARD_HOST_RUN(Embedding, embedding)
SWITCHYARD_HOST_RUN(EmbeddingBackward, embedding_backward)
SWITCHYARD_HOST_RUN(LayerNorm, layernorm)
SWITCHYARD_HOST_RUN(LayerNormBackward, layernorm_backward)
SWITCHYARD_HOST_RUN(RmsNorm, rmsnorm)
SWITCHYARD_HOST_RUN(RmsNormBackward, rmsnorm_backward)
SWITCHYARD_HOST_RUN(Linear, linear)
SWITCHYARD_HOST_RUN(LinearBackward, linear_backward)
SWITCHYARD_HOST_RUN(Gelu, gelu)
SWITCHYARD_HOST_RUN(GeluBackward, gelu_backward)
SWITCHYARD_HOST_RUN(Add, add)
SWITCHYARD_HOST_RUN(Accumulate, accumulate)
SWITCHYARD_HOST_RUN(Cast, cast)
SWITCHYARD_HOST_RUN(Rope, rope)
SWITCHYARD_HOST_RUN(TopKRouting, topk_routing)
SWITCHYARD_HOST_RUN(TopKRoutingBackward, topk_routing_backward)
SWITCHYARD_HOST_RUN(GroupByExpert, group_by_expert)
SWITCHYARD_HOST_RUN(ExpertLinear, expert_linear)
SWITCHYARD_HOST_RUN(ExpertLinearBackward, expert_linear_backward)
SWITCHYARD_HOST_RUN(ClampedSwiglu, clamped_swiglu)
SWITCHYARD_HOST_RUN(ClampedSwigluBackward, clamped_swiglu_backward)
SWITCHYARD_HOST_RUN(ExpertCombine, expert_combine)
SWITCHYARD_HOST_RUN(ExpertCombineBackward, expert_combine_backward)
SWITCHYARD_HOST_RUN(RouterLoadStats, router_load_stats)
SWITCHYARD_HOST_RUN(RouterLoadBackward, router_load_backward)
SWITCHYARD_HOST_RUN(Attention, attention)
SWITCHYARD_HOST_RUN(AttentionBackward, attention_backward)
SWITCHYARD_HOST_RUN(KvCacheWrite, kv_cache_write)
SWITCHYARD_HOST_RUN(PagedAttention, paged_attention)
SWITCHYARD_HOST_RUN(AttentionDecode, attention_decode)
SWITCHYARD_HOST_RUN(CrossEntropy, cross_entropy)
SWITCHYARD_HOST_RUN(CrossEntropyBackward, cross_entropy_backward)
SWITCHYARD_HOST_RUN(SumOfSquares, sum_of_squares)
SWITCHYARD_HOST_RUN(AccumulateSum, accumulate_sum)
SWITCHYARD_HOST_RUN(AdamW, adamw)
#undef SWITCHYARD_HOST_RUN

// ---- simulators ----

std::optional<SimulationReport> simulation_report(const Backend& backend) {
  const SimulatorBackend* simulator = backend.simulator();
  if (!simulator) return std::nullopt;
  return simulator->simulation_report();
}

SimulatorBackend& require_simulator(Backend& backend, const char* what) {
  SimulatorBackend* simulator = backend.simulator();
  require(simulator != nullptr, "device '{}' is not a simulator: {} needs trn1-sim or trn2-sim",
          backend.name(), what);
  return *simulator;
}

void Backend::zero_overwritten(const ops::LinearBackward& op) {
  auto zero = [&](const Tensor& t) {
    if (t.empty() || t.numel() == 0) return;
    require(t.is_contiguous(), "linear_backward: an overwritten gradient must be dense, got {}",
            t.describe());
    fill_zero(t.data, t.bytes());
  };
  if (op.overwrite_dinp) zero(op.dinp);
  if (op.overwrite_param_grads) zero(op.dweight), zero(op.dbias);
}

// ---- host copies ----

std::vector<float> to_host_f32(Backend& backend, const Tensor& t) {
  require(t.is_contiguous(), "to_host_f32: {} is not dense", t.describe());
  const size_t count = static_cast<size_t>(t.numel());
  std::vector<float> values(count);
  if (count == 0) return values;
  if (t.dtype == DType::kF32) {
    backend.copy_to_host(values.data(), t.data, count * sizeof(float));
    return values;
  }
  require(t.dtype == DType::kBF16 || t.dtype == DType::kF16, "to_host_f32: {} is not a float",
          t.describe());
  // Where device memory is host memory the bits are widened where they lie (a decode step's logits
  // are megabytes: a copy first would double the traffic).
  std::vector<uint16_t> copied;
  const uint16_t* bits = static_cast<const uint16_t*>(t.data);
  if (!backend.device_memory_is_host_memory()) {
    copied.resize(count);
    backend.copy_to_host(copied.data(), t.data, count * sizeof(uint16_t));
    bits = copied.data();
  }
  if (t.dtype == DType::kBF16) {
    bf16_to_float(bits, values.data(), count);
  } else {
    for (size_t i = 0; i < count; ++i) values[i] = fp16_to_float(bits[i]);
  }
  return values;
}

void from_host_f32(Backend& backend, const Tensor& t, const float* values) {
  require(t.is_contiguous(), "from_host_f32: {} is not dense", t.describe());
  const size_t count = static_cast<size_t>(t.numel());
  if (count == 0) return;
  if (t.dtype == DType::kF32) {
    backend.copy_to_device(t.data, values, count * sizeof(float));
    return;
  }
  require(t.dtype == DType::kBF16 || t.dtype == DType::kF16, "from_host_f32: {} is not a float",
          t.describe());
  std::vector<uint16_t> bits(count);
  for (size_t i = 0; i < count; ++i) {
    bits[i] = t.dtype == DType::kBF16 ? float_to_bf16(values[i]) : float_to_fp16(values[i]);
  }
  backend.copy_to_device(t.data, bits.data(), count * sizeof(uint16_t));
}

}  // namespace switchyard::backend
