// The counts a decoder-only transformer's cost follows: parameters, FLOPs per token, bytes of
// weights a decoded token reads, KV-cache bytes per token. Computed in one place, from a model's
// config (ModelShape::of) or from a generic description of a published model (the planner's
// catalogs), so that nothing recounts them.
#pragma once

#include <cstdint>
#include <string>

#include "model/model_config.h"

namespace switchyard::model {

struct ModelShape {
  std::string name;
  int64_t layers = 0;
  int64_t hidden = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;  // grouped-query attention; equals heads for multi-head attention
  int64_t head_dim = 0;  // 0: hidden / heads
  int64_t vocab = 0;
  int64_t ffn = 0;       // FFN inner size
  bool gated = false;    // SwiGLU-style: three FFN matrices instead of two
  bool tied_embeddings = true;
  int64_t learned_positions = 0;  // rows of a learned position table (0: rotary/ALiBi)
  bool biases = false;            // linear layers carry biases (GPT-2, gpt-oss)
  bool rms_norm = false;          // norms have gains only (RMSNorm), never shifts
  int64_t context = 0;            // longest sequence; 0 where not known
  // Mixture of experts (gpt-oss): each layer's FFN is `experts` FFNs of `ffn` inner width and a
  // router (linear with bias over the experts); a token runs experts_per_token of them.
  int64_t experts = 0;            // 0: a dense FFN
  int64_t experts_per_token = 0;
  bool attention_sinks = false;   // one learned logit per query head and layer
  int64_t sliding_layers = 0;     // layers that attend over the last `window` positions only
  int64_t window = 0;

  // The shape of a model this engine builds.
  static ModelShape of(const ModelConfig& config, const std::string& name = "");

  // Throws Error naming the first invalid field.
  void validate() const;
  int64_t head_size() const { return head_dim > 0 ? head_dim : hidden / heads; }
  // Width of the packed q|k|v projection.
  int64_t qkv_width() const { return (heads + 2 * kv_heads) * head_size(); }

  int64_t num_parameters() const;
  // Parameters of one FFN (one expert of a mixture): its matrices and biases.
  int64_t ffn_parameters() const;
  // Forward FLOPs per token at sequence length T: 2 per multiply-add for every matrix product,
  // causal attention (q.k and att.v) at the average (T + 1) / 2 keys per query, and the LM head.
  double forward_flops_per_token(int64_t T) const;
  // Forward + backward (backward = 2x forward for every product).
  double training_flops_per_token(int64_t T) const { return 3.0 * forward_flops_per_token(T); }
  // FLOPs of the LM head for one row of logits (part of forward_flops_per_token).
  double head_flops() const { return 2.0 * static_cast<double>(hidden) * static_cast<double>(vocab); }
  // A prompt of T tokens run in one pass: every layer for every token, logits for the last only.
  double prompt_flops(int64_t T) const {
    return static_cast<double>(T) * (forward_flops_per_token(T) - head_flops()) + head_flops();
  }
  // Parameters one decoded token reads: every matrix and vector, but one row of each embedding
  // table that no product reads whole (the position table; the token table when untied).
  int64_t parameters_read_per_token() const;
  // Bytes of weights one decoded token reads (parameters_read_per_token) with the expert
  // matrices held at expert_bits per parameter (MXFP4: 4.25, its scales included) and every
  // other parameter at other_bits (bf16: 16).
  double weight_bytes_read_per_token(double expert_bits, double other_bits) const;
  // Keys and values one token adds to the cache, over all layers (elements).
  int64_t kv_elements_per_token() const { return 2 * layers * kv_heads * head_size(); }
  // Keys and values a sequence of T tokens holds in the cache: sliding layers keep only their
  // window.
  int64_t kv_elements(int64_t T) const;
  // Average keys a query attends to over a sequence of T tokens, on a full or a sliding layer.
  double mean_keys(int64_t T, bool sliding) const;
};

}  // namespace switchyard::model
