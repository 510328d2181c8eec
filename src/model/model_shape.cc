#include "model/model_shape.h"

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
  s.gated = false;
  s.tied_embeddings = true;
  s.learned_positions = config.max_seq_len;
  s.biases = true;
  s.context = config.max_seq_len;
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
}

int64_t ModelShape::num_parameters() const {
  const int64_t C = hidden, F = ffn, qkv = qkv_width(), attn_out = heads * head_size();
  int64_t per_layer = C * qkv + attn_out * C + (gated ? 3 : 2) * C * F;
  per_layer += biases ? 4 * C : 2 * C;  // two norms: gains (and shifts with biases)
  if (biases) per_layer += qkv + C + (gated ? 2 : 1) * F + C;
  return layers * per_layer + vocab * C * (tied_embeddings ? 1 : 2) + learned_positions * C +
         (biases ? 2 * C : C);
}

double ModelShape::forward_flops_per_token(int64_t T) const {
  require(T > 0, "sequence length must be positive, got {}", T);
  const double C = static_cast<double>(hidden), F = static_cast<double>(ffn);
  const double qkv = static_cast<double>(qkv_width());
  const double attn = static_cast<double>(heads * head_size());
  const double matmul_per_layer = 2.0 * (C * qkv + attn * C + (gated ? 3.0 : 2.0) * C * F);
  const double attention_per_layer = 2.0 * 2.0 * attn * static_cast<double>(T + 1) / 2.0;
  return static_cast<double>(layers) * (matmul_per_layer + attention_per_layer) + head_flops();
}

int64_t ModelShape::parameters_read_per_token() const {
  int64_t unread = learned_positions > 0 ? (learned_positions - 1) * hidden : 0;
  if (!tied_embeddings) unread += (vocab - 1) * hidden;  // the input table: one row
  return num_parameters() - unread;
}

}  // namespace switchyard::model
