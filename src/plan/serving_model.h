// The serving model: how long one decode step and one prompt's prefill take on a chip, from the
// model's byte and FLOP counts (model/model_shape.h) and the chip's published peaks.
//
// A decode step of b sequences reads the weights once (all of them for a dense model; for a
// mixture of experts, the experts that the b tokens route to: b tokens each choosing k of E
// experts touch E (1 - (1 - k/E)^b) distinct experts on average) plus every sequence's keys and
// values, and runs b tokens' FLOPs. Its roofline is the larger of bytes / memory bandwidth and
// FLOPs / peak; a real step takes roofline / efficiency plus a fixed overhead (launches,
// scheduling, sampling) plus, under tensor parallelism, two all-reduces of the activations per
// layer (plan/collectives.h). A prefill of P tokens is the same with P tokens and no cache reads.
//
// Expert products run at the chip's MXFP4 rate where the chip multiplies MXFP4 natively
// (ChipSpec::mxfp4_tflops); elsewhere MXFP4 weights are read from memory as stored and decoded to
// bf16 for the products. Attention products and every other matrix run at the bf16 rate (or the
// fp8 rate for fp8 weights on chips with one).
#pragma once

#include <cstdint>
#include <string>

#include "plan/catalog.h"
#include "plan/workload.h"

namespace switchyard::plan {

// How the served weights and the KV cache are stored.
struct ServingPrecision {
  std::string name = "bf16";  // "mxfp4", "bf16" or "fp8" (the weights)
  double expert_bits = 16;    // bits per parameter of the expert matrices (MXFP4: 4.25)
  double other_bits = 16;     // bits per parameter of everything else
  double kv_bytes = 2;        // bytes per cached key or value element
  std::string kv_name = "bf16";
  bool expert_mxfp4() const { return name == "mxfp4"; }
  bool fp8() const { return name == "fp8"; }
};
// `weights`: mxfp4 (experts in MXFP4 with their E8M0 scales, the rest bf16: the gpt-oss
// checkpoints), bf16 or fp8; `kv_cache`: bf16 or fp8. Throws Error for an unknown name, or mxfp4
// for a model without experts.
ServingPrecision serving_precision(const std::string& weights, const std::string& kv_cache,
                                   const ModelShape& shape);

// Expected number of distinct experts that `tokens` tokens touch when each chooses `per_token` of
// `experts` uniformly and independently: experts * (1 - (1 - per_token / experts)^tokens).
double expected_distinct_experts(int64_t experts, int64_t per_token, double tokens);

// The rates a serving step divides by, per chip, before any efficiency.
struct ServingChip {
  double memory_bytes_per_s = 0;
  double other_flops_per_s = 0;   // attention, dense and non-expert products
  double expert_flops_per_s = 0;  // expert products
  double link_bytes_per_s = 0;    // chip-to-chip, one direction (a ring's share)
  double link_latency_s = 5e-6;   // per ring step (plan/collectives.h)
};
ServingChip serving_chip(const ChipSpec& chip, const ServingPrecision& precision,
                         double link_latency_s);
// One sentence on how the chip handles the weights' format, for the evidence text.
std::string weight_format_sentence(const ChipSpec& chip, const ServingPrecision& precision,
                                   const ModelShape& shape);

// What a step costs beyond its roofline.
struct ServingKnobs {
  double efficiency = 0.35;       // share of the roofline a real step reaches
  double step_overhead_s = 5e-4;  // per step (decode step or prefill)
};

// One step's time, by part. total() = overhead + roofline / efficiency + tensor-parallel comm.
struct StepTime {
  double memory_s = 0;   // bytes / bandwidth, per chip
  double compute_s = 0;  // FLOPs / peak, per chip
  double comm_s = 0;     // tensor-parallel all-reduces
  double overhead_s = 0;
  double efficiency = 1;
  double roofline_s() const { return memory_s > compute_s ? memory_s : compute_s; }
  double total() const { return overhead_s + roofline_s() / efficiency + comm_s; }
};

// A model as served: its counts at one precision.
class ServedModel {
 public:
  ServedModel(ModelShape shape, ServingPrecision precision);
  const ModelShape& shape() const { return shape_; }
  const ServingPrecision& precision() const { return precision_; }
  // Bytes of all the weights, as held in memory.
  double resident_weight_bytes() const;
  // Bytes of weights one forward pass over `tokens` tokens reads (a decode step's batch, or a
  // prompt): every non-expert weight once, and the expected distinct experts' matrices.
  double weight_bytes_read(double tokens) const;
  // Bytes of keys and values one sequence of `context` tokens holds (sliding layers keep their
  // window).
  double kv_bytes(double context) const;
  // FLOPs of one decoded token attending over `context` keys, split into expert products and the
  // rest.
  double decode_expert_flops() const;
  double decode_other_flops(double context) const;
  // FLOPs of a prompt of `tokens` tokens run in one pass (causal attention, logits of the last).
  double prompt_expert_flops(int64_t tokens) const;
  double prompt_other_flops(int64_t tokens) const;

 private:
  double expert_matrix_parameters() const;  // all experts' matrices, all layers
  double matrix_flops_per_token() const;    // every product but attention's, one token
  ModelShape shape_;
  ServingPrecision precision_;
};

// A decode step of `batch` sequences holding `context` tokens each, over `tp` chips.
StepTime decode_step(const ServedModel& model, const ServingChip& chip, const ServingKnobs& knobs,
                     int64_t batch, double context, int64_t tp);
// A prefill of one prompt of `tokens` tokens over `tp` chips.
StepTime prefill_step(const ServedModel& model, const ServingChip& chip, const ServingKnobs& knobs,
                      int64_t tokens, int64_t tp);

}  // namespace switchyard::plan
