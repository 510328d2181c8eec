// The training workload as the planner sees it: FLOPs per token, parameter count and memory per
// chip of a decoder-only transformer, for GPT-2 (from the engine's own GptConfig) and for generic
// decoders (Llama-style gated FFN, grouped-query attention, untied heads) so that published runs of
// larger models can be predicted with the same code.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "model/gpt_config.h"

namespace switchyard::plan {

struct DecoderShape {
  std::string name;
  int64_t layers = 0;
  int64_t hidden = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;  // grouped-query attention; equals heads for multi-head attention
  int64_t vocab = 0;
  int64_t ffn = 0;     // FFN inner size
  bool gated = false;  // SwiGLU-style: three FFN matrices instead of two
  bool tied_embeddings = true;
  int64_t learned_positions = 0;  // rows of a learned position table (0: rotary/ALiBi)
  bool biases = false;            // linear layers carry biases (GPT-2)
  // Set for GPT-2 shapes: FLOPs and parameters come from the engine's GptConfig, exactly.
  std::optional<model::GptConfig> gpt;

  // Throws Error naming the first invalid field.
  void validate() const;
  int64_t head_size() const { return hidden / heads; }
};

// GPT-2 as the engine builds it (GptConfig presets or a checkpoint's config.json).
DecoderShape shape_from_gpt(const model::GptConfig& config, const std::string& name);
// A generic decoder from JSON: {"name", "layers", "hidden", "heads", "vocab", "ffn", "gated",
// "kv_heads"?, "tied_embeddings"?, "learned_positions"?, "biases"?}. Throws Error naming the field.
DecoderShape shape_from_json(const nlohmann::json& json, const std::string& where);

int64_t num_parameters(const DecoderShape& shape);
// Forward FLOPs per token at sequence length T: 2 per multiply-add for every matrix product, causal
// attention (q.k and att.v) at the average (T + 1) / 2 keys per query, and the LM head. For GPT-2
// this is GptConfig::forward_flops_per_token.
double forward_flops_per_token(const DecoderShape& shape, int64_t T);
// Forward + backward (3x forward); GptConfig::training_flops_per_token for GPT-2. Recomputation is
// not counted here: it is hardware work, not model work.
double training_flops_per_token(const DecoderShape& shape, int64_t T);

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

// Mirrors what model::Gpt allocates (one allocation each for parameters, gradients, AdamW m and v,
// the forward activations of one batch and the backward pass's one-layer scratch), generalised to
// tensor parallelism, ZeRO-1, recomputation and narrower types.
MemoryEstimate estimate_memory(const DecoderShape& shape, const Precision& precision,
                               const MemoryLayout& layout);

}  // namespace switchyard::plan
