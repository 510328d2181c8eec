// The training workload as the planner sees it: FLOPs per token, parameter count and memory per
// chip of a decoder-only transformer, for GPT-2 (from the engine's own ModelConfig) and for generic
// decoders (Llama-style gated FFN, grouped-query attention, untied heads) so that published runs of
// larger models can be predicted with the same code.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "model/model_config.h"
#include "model/model_shape.h"

namespace switchyard::plan {

// The planner's model shapes are the engine's (model/model_shape.h): the same counts for a model
// this engine builds and for a published one described in a catalog.
using model::ModelShape;

// GPT-2 as the engine builds it (ModelConfig presets or a checkpoint's config.json).
ModelShape shape_from_config(const model::ModelConfig& config, const std::string& name);
// A generic decoder from JSON: {"name", "layers", "hidden", "heads", "vocab", "ffn", "gated",
// "kv_heads"?, "head_dim"?, "tied_embeddings"?, "learned_positions"?, "biases"?}. Throws Error
// naming the field.
ModelShape shape_from_json(const nlohmann::json& json, const std::string& where);

// How the state and activations are stored.
struct Precision {
  double param_bytes = 4;  // working copy of the weights
  double grad_bytes = 4;
  double optimizer_bytes = 8;  // AdamW m and v (plus an fp32 master copy in mixed precision)
  double activation_bytes = 4;
  bool stores_attention_matrix = true;  // false with fused (flash) attention
};
// The engine today: everything fp32, attention probabilities kept for the backward pass.
Precision engine_fp32();
// Mixed precision on accelerators: bf16 weights, gradients and activations; fp32 master weights and
// moments (4 + 8 bytes); fused attention.
Precision mixed_bf16();

struct MemoryLayout {
  int64_t micro_batch = 1;  // sequences per chip per forward pass
  int64_t seq_len = 0;
  int64_t tensor_parallel = 1;  // chips sharing each layer (weights and activations split)
  int64_t data_parallel = 1;    // replicas (ZeRO-1 shards the optimizer over them)
  bool zero1 = false;
  bool recompute = false;  // keep only each layer's input; recompute the rest in backward
};

// Bytes per chip, by kind.
struct MemoryEstimate {
  double parameters = 0, gradients = 0, optimizer = 0, activations = 0, backward_scratch = 0;
  double total() const {
    return parameters + gradients + optimizer + activations + backward_scratch;
  }
};

// Mirrors what model::Model allocates (one allocation each for parameters, gradients, AdamW m and v,
// the forward activations of one batch and the backward pass's one-layer scratch), generalised to
// tensor parallelism, ZeRO-1, recomputation and narrower types.
MemoryEstimate estimate_memory(const ModelShape& shape, const Precision& precision,
                               const MemoryLayout& layout);

}  // namespace switchyard::plan
