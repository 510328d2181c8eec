#include "plan/workload.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace switchyard::plan {

namespace {

int64_t int_field(const nlohmann::json& json, const char* key, const std::string& where,
                  std::optional<int64_t> fallback = std::nullopt) {
  if (!json.contains(key)) {
    if (fallback) return *fallback;
    fail("{}: missing field '{}'", where, key);
  }
  const nlohmann::json& v = json.at(key);
  if (!v.is_number_integer())
    fail("{}: field '{}' must be an integer, got {}", where, key, v.dump());
  return v.get<int64_t>();
}

bool bool_field(const nlohmann::json& json, const char* key, const std::string& where,
                bool fallback) {
  if (!json.contains(key)) return fallback;
  const nlohmann::json& v = json.at(key);
  if (!v.is_boolean()) fail("{}: field '{}' must be true or false, got {}", where, key, v.dump());
  return v.get<bool>();
}

// Elements of forward activations per token for one layer, on one chip of a tensor-parallel group
// before the division by the group size: the tensors the GPT-2 family keeps per layer (ln1, qkv, atty,
// attn_proj, residual2, ln2, fc, fc activation, fc_proj, residual3, four LayerNorm statistics) and,
// unless attention is fused, the attention probabilities (NH x T per token).
double layer_activation_elements(const ModelShape& s, int64_t T, bool attention_matrix) {
  const double C = s.hidden, F = s.ffn;
  const double qkv = static_cast<double>(s.qkv_width());
  double elements = C /*ln1*/ + qkv + C /*atty*/ + C /*attn_proj*/ + C /*residual2*/ + C /*ln2*/ +
                    (s.gated ? 3.0 : 2.0) * F + C /*fc_proj*/ + C /*residual3*/ + 4.0 /*stats*/;
  if (attention_matrix) elements += static_cast<double>(s.heads) * T;
  return elements;
}

// Backward scratch per token for the one layer being differentiated (the GPT-2 family's scratch):
// d_residual, d_ln, d_qkv, d_atty, d_att, d_fch, d_fch_gelu and d_lnf.
double backward_scratch_elements(const ModelShape& s, int64_t T, bool attention_matrix) {
  const double C = s.hidden, F = s.ffn;
  const double qkv = static_cast<double>(s.qkv_width());
  double elements = C + C + qkv + C + (s.gated ? 3.0 : 2.0) * F + C;
  if (attention_matrix) elements += static_cast<double>(s.heads) * T;
  return elements;
}

}  // namespace

ModelShape shape_from_config(const model::ModelConfig& config, const std::string& name) {
  return ModelShape::of(config, name);
}

ModelShape shape_from_json(const nlohmann::json& json, const std::string& where) {
  if (!json.is_object()) fail("{}: expected a model shape object", where);
  ModelShape s;
  if (!json.contains("name") || !json["name"].is_string()) {
    fail("{}: missing string field 'name'", where);
  }
  s.name = json["name"].get<std::string>();
  s.layers = int_field(json, "layers", where);
  s.hidden = int_field(json, "hidden", where);
  s.heads = int_field(json, "heads", where);
  s.kv_heads = int_field(json, "kv_heads", where, s.heads);
  s.head_dim = int_field(json, "head_dim", where, 0);
  s.vocab = int_field(json, "vocab", where);
  s.ffn = int_field(json, "ffn", where);
  s.gated = bool_field(json, "gated", where, false);
  s.tied_embeddings = bool_field(json, "tied_embeddings", where, false);
  s.learned_positions = int_field(json, "learned_positions", where, 0);
  s.biases = bool_field(json, "biases", where, false);
  s.validate();
  return s;
}

Precision engine_fp32() { return Precision{}; }

Precision mixed_bf16() {
  Precision p;
  p.param_bytes = 2;
  p.grad_bytes = 2;
  p.optimizer_bytes = 12;  // fp32 master weights, m and v
  p.activation_bytes = 2;
  p.stores_attention_matrix = false;
  return p;
}

MemoryEstimate estimate_memory(const ModelShape& s, const Precision& p, const MemoryLayout& m) {
  require(m.micro_batch > 0, "micro batch must be positive, got {}", m.micro_batch);
  require(m.seq_len > 0, "sequence length must be positive, got {}", m.seq_len);
  require(m.tensor_parallel > 0 && m.data_parallel > 0,
          "parallel degrees must be positive (tensor {}, data {})", m.tensor_parallel,
          m.data_parallel);
  const double params = static_cast<double>(s.num_parameters()) / m.tensor_parallel;
  const double tokens = static_cast<double>(m.micro_batch) * m.seq_len;
  const double t = static_cast<double>(m.tensor_parallel);
  const bool att = p.stores_attention_matrix;

  MemoryEstimate e;
  e.parameters = params * p.param_bytes;
  e.gradients = params * p.grad_bytes;
  e.optimizer = params * p.optimizer_bytes / (m.zero1 ? m.data_parallel : 1);

  const double layer = layer_activation_elements(s, m.seq_len, att) / t;
  const double C = s.hidden;
  // Outside the layers: token ids and targets (4 bytes each), the embedding output, the final
  // LayerNorm (output and two statistics), the logits (split over the group) and per-token losses.
  const double outside = C / t + C / t + 2.0 + static_cast<double>(s.vocab) / t + 1.0;
  double stored_per_token = outside;
  double scratch_per_token = backward_scratch_elements(s, m.seq_len, att) / t;
  if (m.recompute) {
    // Only each layer's input survives the forward pass; the layer being differentiated is
    // recomputed into one layer's worth of buffers.
    stored_per_token += static_cast<double>(s.layers) * C / t;
    scratch_per_token += layer;
  } else {
    stored_per_token += static_cast<double>(s.layers) * layer;
  }
  e.activations = tokens * (2.0 * 4.0 + (stored_per_token - 2.0) * p.activation_bytes);
  e.backward_scratch = tokens * scratch_per_token * p.activation_bytes;
  return e;
}

}  // namespace switchyard::plan
