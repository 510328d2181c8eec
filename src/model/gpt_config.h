// GPT-2 model shape: presets, validation, and the Hugging Face config.json form.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace switchyard::model {

struct GptConfig {
  int max_seq_len = 0;  // n_positions
  int vocab_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int channels = 0;     // n_embd

  int head_size() const { return channels / num_heads; }
  // Throws Error naming the first inconsistent field.
  void validate() const;
  // Number of parameters (the LM head is tied to the token embedding).
  int64_t num_parameters() const;
  // Forward FLOPs per token for a sequence of T tokens: every matrix product (2 per multiply-add),
  // attention scores and values at the average causal length, and the LM head.
  double forward_flops_per_token(int T) const;
  // Forward + backward (backward = 2x forward for every product).
  double training_flops_per_token(int T) const { return 3.0 * forward_flops_per_token(T); }
};

// Names accepted by preset(): gpt2-124m, gpt2-350m, gpt2-774m, gpt2-1558m, tiny.
std::vector<std::string> preset_names();
// Throws Error listing the known presets for an unknown name.
GptConfig preset(const std::string& name);

// Hugging Face GPT-2 config.json <-> GptConfig. from_json throws Error naming a missing or invalid
// field; fields of other architectures (model_type other than gpt2) are rejected.
GptConfig config_from_json(const nlohmann::json& json);
nlohmann::json config_to_json(const GptConfig& config);

}  // namespace switchyard::model
