#include "model/model_shape.h"

#include <algorithm>

#include "core/error.h"

namespace switchyard::model {

ModelShape ModelShape::of(const ModelConfig& config, const std::string& name) {
  config.validate();
  ModelShape s;
  s.name = name;
  s.layers = config.num_layers;
  s.hidden = config.channels;
  s.heads = config.num_heads;
  s.kv_heads = config.kv_heads();
  s.head_dim = config.head_size();
  s.vocab = config.vocab_size;
  s.ffn = config.mlp_hidden();
  s.biases = true;
  s.context = config.max_seq_len;
  if (!config.is_gpt_oss()) {
    s.tied_embeddings = true;
    s.learned_positions = config.max_seq_len;
    return s;
  }
  s.gated = true;
  s.tied_embeddings = false;
  s.rms_norm = true;
  s.experts = config.num_experts;
  s.experts_per_token = config.experts_per_token;
  s.attention_sinks = true;
  for (int l = 0; l < config.num_layers; ++l) {
    if (config.layer_window(l) > 0) ++s.sliding_layers;
  }
  s.window = config.sliding_window;
  return s;
}

void ModelShape::validate() const {
  const std::string what = name.empty() ? "model shape" : "model shape '" + name + "'";
  require(layers > 0, "{}: layers must be positive, got {}", what, layers);
  require(hidden > 0, "{}: hidden must be positive, got {}", what, hidden);
  require(heads > 0, "{}: heads must be positive, got {}", what, heads);
  require(head_dim > 0 || hidden % heads == 0,
          "{}: hidden ({}) must be divisible by heads ({}) when head_dim is not given", what,
          hidden, heads);
  require(kv_heads > 0 && kv_heads <= heads && heads % kv_heads == 0,
          "{}: kv_heads ({}) must divide heads ({})", what, kv_heads, heads);
  require(vocab > 0, "{}: vocab must be positive, got {}", what, vocab);
  require(ffn > 0, "{}: ffn must be positive, got {}", what, ffn);
  require(learned_positions >= 0, "{}: learned_positions must be >= 0, got {}", what,
          learned_positions);
  require(experts >= 0 && experts_per_token >= 0 && experts_per_token <= experts &&
              (experts == 0 || experts_per_token > 0),
          "{}: experts_per_token ({}) must be in [1, experts = {}]", what, experts_per_token,
          experts);
  require(sliding_layers >= 0 && sliding_layers <= layers && (sliding_layers == 0 || window > 0),
          "{}: {} sliding layers of window {} do not fit {} layers", what, sliding_layers, window,
          layers);
}

int64_t ModelShape::ffn_parameters() const {
  const int64_t C = hidden, F = ffn;
  int64_t n = (gated ? 3 : 2) * C * F;
  if (biases) n += (gated ? 2 : 1) * F + C;
  return n;
}

int64_t ModelShape::num_parameters() const {
  const int64_t C = hidden, qkv = qkv_width(), attn_out = heads * head_size();
  const int64_t norm = rms_norm || !biases ? C : 2 * C;  // gains (and shifts)
  int64_t per_layer = C * qkv + attn_out * C + 2 * norm;
  if (biases) per_layer += qkv + C;
  if (attention_sinks) per_layer += heads;
  per_layer += experts > 0 ? experts * ffn_parameters() + experts * C + (biases ? experts : 0)
                           : ffn_parameters();
  return layers * per_layer + vocab * C * (tied_embeddings ? 1 : 2) + learned_positions * C + norm;
}

double ModelShape::mean_keys(int64_t T, bool sliding) const {
  require(T > 0, "sequence length must be positive, got {}", T);
  const double t = static_cast<double>(T);
  if (!sliding || window <= 0 || T <= window) return (t + 1.0) / 2.0;
  const double w = static_cast<double>(window);
  return (w * (w + 1.0) / 2.0 + (t - w) * w) / t;  // positions 1..W see 1..W keys, the rest W
}

double ModelShape::forward_flops_per_token(int64_t T) const {
  require(T > 0, "sequence length must be positive, got {}", T);
  const double C = static_cast<double>(hidden), F = static_cast<double>(ffn);
  const double qkv = static_cast<double>(qkv_width());
  const double attn = static_cast<double>(heads * head_size());
  const double ffn_products = (gated ? 3.0 : 2.0) * C * F;
  double matmul_per_layer = C * qkv + attn * C;
  matmul_per_layer += experts > 0 ? static_cast<double>(experts_per_token) * ffn_products +
                                        static_cast<double>(experts) * C
                                  : ffn_products;
  const double full_layers = static_cast<double>(layers - sliding_layers);
  const double keys = full_layers * mean_keys(T, false) +
                      static_cast<double>(sliding_layers) * mean_keys(T, true);
  // q.k and att.v: 2 FLOPs per multiply-add, two products per key.
  return 2.0 * static_cast<double>(layers) * matmul_per_layer + 4.0 * attn * keys + head_flops();
}

int64_t ModelShape::parameters_read_per_token() const {
  int64_t unread = learned_positions > 0 ? (learned_positions - 1) * hidden : 0;
  if (!tied_embeddings) unread += (vocab - 1) * hidden;  // the input table: one row
  if (experts > 0) unread += layers * (experts - experts_per_token) * ffn_parameters();
  return num_parameters() - unread;
}

double ModelShape::weight_bytes_read_per_token(double expert_bits, double other_bits) const {
  const double expert_matrices = experts > 0 ? static_cast<double>(layers * experts_per_token) *
                                                   (gated ? 3.0 : 2.0) * static_cast<double>(hidden * ffn)
                                             : 0.0;
  const double others = static_cast<double>(parameters_read_per_token()) - expert_matrices;
  return (expert_matrices * expert_bits + others * other_bits) / 8.0;
}

int64_t ModelShape::kv_elements(int64_t T) const {
  const int64_t per_position = 2 * kv_heads * head_size();
  const int64_t sliding_positions = window > 0 ? std::min(T, window) : T;
  return per_position * ((layers - sliding_layers) * T + sliding_layers * sliding_positions);
}

}  // namespace switchyard::model
