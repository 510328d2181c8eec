// A model's architecture: its family and shape, presets, validation, and the Hugging Face
// config.json form.
//
// One struct serves every family; each family reads the fields it uses. GPT-2: learned positions,
// LayerNorm, tanh-GELU MLP of 4 x channels, tied head; heads == kv_heads, head_dim = channels /
// heads. gpt-oss (family "gpt_oss"): RMSNorm, RoPE with YaRN, grouped-query attention with sinks
// and alternating sliding and full layers, a mixture of clamped-SwiGLU experts, untied head.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace switchyard::model {

struct ModelConfig {
  int max_seq_len = 0;  // n_positions: the context
  int vocab_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int channels = 0;     // n_embd: the hidden size
  std::string family = "gpt2";

  // gpt-oss's fields (0 or empty where a family does not use them).
  int num_kv_heads = 0;          // 0: num_heads
  int head_dim = 0;              // 0: channels / num_heads
  int num_experts = 0;           // 0: a dense MLP
  int experts_per_token = 0;
  int intermediate = 0;          // each expert's inner width
  int sliding_window = 0;        // keys a sliding layer sees, the current one included
  std::vector<std::string> layer_types;  // "sliding_attention" or "full_attention" per layer
  double rope_theta = 0;         // 0: no rotary embedding
  double rope_yarn_factor = 1.0;
  int rope_original_context = 0;
  double rope_beta_fast = 32.0, rope_beta_slow = 1.0;
  bool rope_truncate = true;     // YaRN rounds its ramp's ends (gpt-oss: false)
  float norm_epsilon = 1e-5f;
  float router_aux_loss_coef = 0.0f;
  float swiglu_alpha = 1.702f, swiglu_limit = 7.0f;
  int eos_token_id = -1, pad_token_id = -1;  // -1: not given

  bool is_gpt_oss() const { return family == "gpt_oss"; }
  int head_size() const { return head_dim > 0 ? head_dim : channels / num_heads; }
  int kv_heads() const { return num_kv_heads > 0 ? num_kv_heads : num_heads; }
  int mlp_hidden() const { return intermediate > 0 ? intermediate : 4 * channels; }
  // Keys a query of `layer` attends to, itself included; 0 for all earlier positions.
  int layer_window(int layer) const;
  // Throws Error naming the first inconsistent field.
  void validate() const;
};

// Names accepted by preset(): gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1558m, tiny, gpt-oss-20b,
// gpt-oss-120b, gpt-oss-tiny.
std::vector<std::string> preset_names();
// Throws Error listing the known presets for an unknown name.
ModelConfig preset(const std::string& name);

// Hugging Face config.json (model_type "gpt2" or "gpt_oss") <-> ModelConfig. from_json throws Error
// naming a missing or invalid field or an unknown model_type.
ModelConfig config_from_json(const nlohmann::json& json);
nlohmann::json config_to_json(const ModelConfig& config);

}  // namespace switchyard::model
