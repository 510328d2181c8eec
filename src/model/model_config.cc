#include "model/model_config.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace switchyard::model {

namespace {

struct Preset {
  const char* name;
  ModelConfig config;
};

// The four published GPT-2 sizes, and a ~1M-parameter model for quick runs (byte vocabulary).
const Preset kPresets[] = {
    {"gpt2-124m", {1024, 50257, 12, 12, 768}},
    {"gpt2-350m", {1024, 50257, 24, 16, 1024}},
    {"gpt2-774m", {1024, 50257, 36, 20, 1280}},
    {"gpt2-1558m", {1024, 50257, 48, 25, 1600}},
    {"tiny", {256, 256, 4, 4, 128}},
};

int json_int(const nlohmann::json& json, const char* key) {
  if (!json.contains(key)) fail("config.json: missing field '{}'", key);
  const nlohmann::json& value = json.at(key);
  if (!value.is_number_integer()) fail("config.json: field '{}' must be an integer, got {}", key, value.dump());
  int64_t v = value.get<int64_t>();
  if (v <= 0 || v > (int64_t{1} << 30)) fail("config.json: field '{}' = {} is out of range", key, v);
  return static_cast<int>(v);
}

}  // namespace

void ModelConfig::validate() const {
  require(max_seq_len > 0, "model config: n_positions must be positive, got {}", max_seq_len);
  require(vocab_size > 0, "model config: vocab_size must be positive, got {}", vocab_size);
  require(num_layers > 0, "model config: n_layer must be positive, got {}", num_layers);
  require(num_heads > 0, "model config: n_head must be positive, got {}", num_heads);
  require(channels > 0, "model config: n_embd must be positive, got {}", channels);
  require(channels % num_heads == 0, "model config: n_embd ({}) must be divisible by n_head ({})",
          channels, num_heads);
  // Tensor sizes are indexed with int in kernels: keep every single tensor below 2^31 elements.
  require(int64_t{vocab_size} * channels < (int64_t{1} << 31) &&
              int64_t{4} * channels * channels < (int64_t{1} << 31),
          "model config: n_embd {} with vocab_size {} gives tensors beyond 2^31 elements", channels,
          vocab_size);
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (const Preset& p : kPresets) names.push_back(p.name);
  return names;
}

ModelConfig preset(const std::string& name) {
  for (const Preset& p : kPresets) {
    if (name == p.name) return p.config;
  }
  std::string known;
  for (const Preset& p : kPresets) known += (known.empty() ? "" : ", ") + std::string(p.name);
  fail("unknown model preset '{}' (known: {})", name, known);
}

ModelConfig config_from_json(const nlohmann::json& json) {
  if (!json.is_object()) fail("config.json: expected a JSON object");
  if (json.contains("model_type") && json["model_type"] != "gpt2") {
    fail("config.json: model_type {} is not supported (expected \"gpt2\")", json["model_type"].dump());
  }
  ModelConfig config;
  config.max_seq_len = json_int(json, "n_positions");
  config.vocab_size = json_int(json, "vocab_size");
  config.num_layers = json_int(json, "n_layer");
  config.num_heads = json_int(json, "n_head");
  config.channels = json_int(json, "n_embd");
  if (json.contains("activation_function")) {
    const auto& act = json["activation_function"];
    if (act != "gelu_new" && act != "gelu_pytorch_tanh") {
      fail("config.json: activation_function {} is not supported (expected \"gelu_new\")", act.dump());
    }
  }
  config.validate();
  return config;
}

nlohmann::json config_to_json(const ModelConfig& config) {
  return {
      {"model_type", "gpt2"},
      {"architectures", {"GPT2LMHeadModel"}},
      {"n_positions", config.max_seq_len},
      {"n_ctx", config.max_seq_len},
      {"vocab_size", config.vocab_size},
      {"n_layer", config.num_layers},
      {"n_head", config.num_heads},
      {"n_embd", config.channels},
      {"n_inner", nullptr},
      {"activation_function", "gelu_new"},
      {"layer_norm_epsilon", 1e-5},
      {"resid_pdrop", 0.0},
      {"embd_pdrop", 0.0},
      {"attn_pdrop", 0.0},
      {"tie_word_embeddings", true},
      {"bos_token_id", config.vocab_size - 1},
      {"eos_token_id", config.vocab_size - 1},
  };
}

}  // namespace switchyard::model
