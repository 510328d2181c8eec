// A model's architecture: its family and shape, presets, validation, and the Hugging Face
// config.json form.
//
// One struct serves every family; each family reads the fields it uses (GPT-2: learned positions,
// LayerNorm, tanh-GELU MLP of 4 x channels, tied head; heads == kv_heads, head_dim = channels /
// heads).
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

  int head_size() const { return channels / num_heads; }
  int kv_heads() const { return num_heads; }
  int mlp_hidden() const { return 4 * channels; }
  // Throws Error naming the first inconsistent field.
  void validate() const;
};

// Names accepted by preset(): gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1558m, tiny.
std::vector<std::string> preset_names();
// Throws Error listing the known presets for an unknown name.
ModelConfig preset(const std::string& name);

// Hugging Face GPT-2 config.json <-> ModelConfig. from_json throws Error naming a missing or invalid
// field; fields of other architectures (model_type other than gpt2) are rejected.
ModelConfig config_from_json(const nlohmann::json& json);
nlohmann::json config_to_json(const ModelConfig& config);

}  // namespace switchyard::model
