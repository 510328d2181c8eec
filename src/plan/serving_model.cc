#include "plan/serving_model.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "plan/collectives.h"

namespace switchyard::plan {

namespace {

constexpr double kActivationBytes = 2;  // bf16 activations cross the tensor-parallel links

double ffn_matrices(const ModelShape& s) {
  return (s.gated ? 3.0 : 2.0) * static_cast<double>(s.hidden) * static_cast<double>(s.ffn);
}

double attention_width(const ModelShape& s) { return static_cast<double>(s.heads * s.head_size()); }

// Keys one query at position `context` attends to, summed over the layers.
double keys_over_layers(const ModelShape& s, double context) {
  const double sliding = static_cast<double>(s.sliding_layers);
  const double full = static_cast<double>(s.layers) - sliding;
  const double window = s.window > 0 ? std::min(context, static_cast<double>(s.window)) : context;
  return full * context + sliding * window;
}

}  // namespace

ServingPrecision serving_precision(const std::string& weights, const std::string& kv_cache,
                                   const ModelShape& shape) {
  ServingPrecision p;
  p.name = weights;
  if (weights == "mxfp4") {
    require(shape.experts > 0,
            "--precision mxfp4 stores expert weights in MXFP4, but {} has no experts (use bf16 or "
            "fp8)",
            shape.name.empty() ? std::string("the model") : shape.name);
    p.expert_bits = 4.25;  // 32 FP4 values share one 8-bit E8M0 scale
  } else if (weights == "fp8") {
    p.expert_bits = p.other_bits = 8;
  } else if (weights != "bf16") {
    fail("--precision must be mxfp4, bf16 or fp8, got '{}'", weights);
  }
  p.kv_name = kv_cache;
  if (kv_cache == "fp8") {
    p.kv_bytes = 1;
  } else if (kv_cache != "bf16") {
    fail("--kv-cache must be bf16 or fp8, got '{}'", kv_cache);
  }
  return p;
}

double expected_distinct_experts(int64_t experts, int64_t per_token, double tokens) {
  require(experts > 0 && per_token > 0 && per_token <= experts,
          "expected experts: need 0 < per_token ({}) <= experts ({})", per_token, experts);
  require(tokens >= 0, "expected experts: tokens must be >= 0, got {}", tokens);
  const double e = static_cast<double>(experts);
  return e * (1.0 - std::pow(1.0 - static_cast<double>(per_token) / e, tokens));
}

ServingChip serving_chip(const ChipSpec& chip, const ServingPrecision& precision,
                         double link_latency_s) {
  ServingChip c;
  c.memory_bytes_per_s = chip.memory_gbs.value * 1e9;
  const double bf16 = chip.bf16_tflops.value * 1e12;
  const bool fp8 = precision.fp8() && chip.fp8_tflops;
  c.other_flops_per_s = fp8 ? chip.fp8_tflops->value * 1e12 : bf16;
  c.expert_flops_per_s = c.other_flops_per_s;
  if (precision.expert_mxfp4() && chip.mxfp4_tflops)
    c.expert_flops_per_s = chip.mxfp4_tflops->value * 1e12;
  c.link_bytes_per_s =
      chip.chip_to_chip_gbs.value * 1e9 / (chip.chip_to_chip_bidirectional ? 2 : 1);
  c.link_latency_s = link_latency_s;
  return c;
}

std::string weight_format_sentence(const ChipSpec& chip, const ServingPrecision& precision,
                                   const ModelShape& shape) {
  if (precision.expert_mxfp4()) {
    if (chip.mxfp4_tflops) {
      return fmt::format(
          "MXFP4 experts read as stored (4.25 bits per weight) and multiplied natively at {:g} "
          "TFLOPS",
          chip.mxfp4_tflops->value);
    }
    return fmt::format(
        "MXFP4 experts read from memory as stored (4.25 bits per weight), decoded to bf16 for "
        "the products ({:g} TFLOPS bf16): no native MXFP4 in the chip catalog",
        chip.bf16_tflops.value);
  }
  if (precision.fp8()) {
    return chip.fp8_tflops
               ? fmt::format("fp8 weights, products at {:g} TFLOPS fp8", chip.fp8_tflops->value)
               : fmt::format(
                     "fp8 weights decoded to bf16 ({:g} TFLOPS): no fp8 rate "
                     "in the chip catalog",
                     chip.bf16_tflops.value);
  }
  return fmt::format("bf16 weights{}, products at {:g} TFLOPS bf16",
                     shape.experts > 0 ? " (experts included)" : "", chip.bf16_tflops.value);
}

ServedModel::ServedModel(ModelShape shape, ServingPrecision precision)
    : shape_(std::move(shape)), precision_(std::move(precision)) {
  shape_.validate();
}

double ServedModel::expert_matrix_parameters() const {
  if (shape_.experts == 0) return 0;
  return static_cast<double>(shape_.layers * shape_.experts) * ffn_matrices(shape_);
}

double ServedModel::resident_weight_bytes() const {
  const double experts = expert_matrix_parameters();
  const double others = static_cast<double>(shape_.num_parameters()) - experts;
  return (experts * precision_.expert_bits + others * precision_.other_bits) / 8.0;
}

double ServedModel::weight_bytes_read(double tokens) const {
  require(tokens >= 1, "a forward pass needs at least one token, got {}", tokens);
  // One token: every non-expert weight (one embedding row) and its k experts. More tokens read the
  // same non-expert weights again from cache, not memory, and more distinct experts.
  double bytes = shape_.weight_bytes_read_per_token(precision_.expert_bits, precision_.other_bits);
  if (shape_.experts == 0) return bytes;
  const double matrices = ffn_matrices(shape_);
  const double biases = static_cast<double>(shape_.ffn_parameters()) - matrices;
  const double per_expert =
      (matrices * precision_.expert_bits + biases * precision_.other_bits) / 8.0;
  const double extra = expected_distinct_experts(shape_.experts, shape_.experts_per_token, tokens) -
                       static_cast<double>(shape_.experts_per_token);
  return bytes + static_cast<double>(shape_.layers) * extra * per_expert;
}

double ServedModel::kv_bytes(double context) const {
  require(context >= 0, "context must be >= 0 tokens, got {}", context);
  const double per_position = 2.0 * static_cast<double>(shape_.kv_heads * shape_.head_size());
  return per_position * keys_over_layers(shape_, context) * precision_.kv_bytes;
}

double ServedModel::matrix_flops_per_token() const {
  // forward_flops_per_token(1) attends over exactly one key on every layer.
  return shape_.forward_flops_per_token(1) -
         4.0 * attention_width(shape_) * static_cast<double>(shape_.layers);
}

double ServedModel::decode_expert_flops() const {
  if (shape_.experts == 0) return 0;
  return 2.0 * static_cast<double>(shape_.layers * shape_.experts_per_token) * ffn_matrices(shape_);
}

double ServedModel::decode_other_flops(double context) const {
  return matrix_flops_per_token() - decode_expert_flops() +
         4.0 * attention_width(shape_) * keys_over_layers(shape_, context);
}

double ServedModel::prompt_expert_flops(int64_t tokens) const {
  return static_cast<double>(tokens) * decode_expert_flops();
}

double ServedModel::prompt_other_flops(int64_t tokens) const {
  return shape_.prompt_flops(tokens) - prompt_expert_flops(tokens);
}

namespace {

// Two all-reduces of the activations per layer (after attention and after the FFN).
double tensor_parallel_seconds(const ServedModel& model, const ServingChip& chip, double tokens,
                               int64_t tp) {
  if (tp <= 1) return 0;
  const double bytes = tokens * static_cast<double>(model.shape().hidden) * kActivationBytes;
  return static_cast<double>(model.shape().layers) * 2.0 *
         ring_allreduce_seconds(bytes, tp, chip.link_bytes_per_s, chip.link_latency_s);
}

StepTime step(const ServingChip& chip, const ServingKnobs& knobs, double bytes, double expert_flops,
              double other_flops, int64_t tp) {
  require(tp >= 1, "tensor-parallel degree must be >= 1, got {}", tp);
  require(knobs.efficiency > 0 && knobs.efficiency <= 1,
          "serving efficiency must be in (0, 1], got {}", knobs.efficiency);
  require(knobs.step_overhead_s >= 0, "step overhead must be >= 0 s, got {}",
          knobs.step_overhead_s);
  const double t = static_cast<double>(tp);
  StepTime s;
  s.memory_s = bytes / t / chip.memory_bytes_per_s;
  s.compute_s = (expert_flops / chip.expert_flops_per_s + other_flops / chip.other_flops_per_s) / t;
  s.overhead_s = knobs.step_overhead_s;
  s.efficiency = knobs.efficiency;
  return s;
}

}  // namespace

StepTime decode_step(const ServedModel& model, const ServingChip& chip, const ServingKnobs& knobs,
                     int64_t batch, double context, int64_t tp) {
  require(batch >= 1, "decode batch must be >= 1, got {}", batch);
  const double b = static_cast<double>(batch);
  const double bytes = model.weight_bytes_read(b) + b * model.kv_bytes(context);
  StepTime s = step(chip, knobs, bytes, b * model.decode_expert_flops(),
                    b * model.decode_other_flops(context), tp);
  s.comm_s = tensor_parallel_seconds(model, chip, b, tp);
  return s;
}

StepTime prefill_step(const ServedModel& model, const ServingChip& chip, const ServingKnobs& knobs,
                      int64_t tokens, int64_t tp) {
  require(tokens >= 1, "a prompt needs at least one token, got {}", tokens);
  const double t = static_cast<double>(tokens);
  StepTime s = step(chip, knobs, model.weight_bytes_read(t), model.prompt_expert_flops(tokens),
                    model.prompt_other_flops(tokens), tp);
  s.comm_s = tensor_parallel_seconds(model, chip, t, tp);
  return s;
}

}  // namespace switchyard::plan
