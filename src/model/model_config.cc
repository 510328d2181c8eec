#include "model/model_config.h"

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace switchyard::model {

namespace {

struct Preset {
  const char* name;
  ModelConfig config;
};

// gpt-oss as published (config.json of openai/gpt-oss-20b and -120b): 64 query heads over 8 kv
// heads of 64, hidden 2880, experts of 2880 with top-4, window 128 on even layers, RoPE theta
// 150000 with YaRN x32 over 4096, o200k_harmony's vocabulary (201,088) and special tokens.
ModelConfig gpt_oss(int layers, int experts) {
  ModelConfig c;
  c.family = "gpt_oss";
  c.max_seq_len = 131072;
  c.vocab_size = 201088;
  c.num_layers = layers;
  c.num_heads = 64;
  c.channels = 2880;
  c.num_kv_heads = 8;
  c.head_dim = 64;
  c.num_experts = experts;
  c.experts_per_token = 4;
  c.intermediate = 2880;
  c.sliding_window = 128;
  c.rope_theta = 150000.0;
  c.rope_yarn_factor = 32.0;
  c.rope_original_context = 4096;
  c.rope_truncate = false;
  c.router_aux_loss_coef = 0.9f;
  c.eos_token_id = 200002;  // <|return|>
  c.pad_token_id = 199999;  // <|endoftext|>
  for (int l = 0; l < layers; ++l) {
    c.layer_types.push_back(l % 2 == 0 ? "sliding_attention" : "full_attention");
  }
  return c;
}

// A small gpt-oss for quick runs and training on the CPU (byte vocabulary): every feature of the
// family (GQA, sinks, sliding and full layers, YaRN, top-2 of 4 experts) at toy size.
ModelConfig gpt_oss_tiny() {
  ModelConfig c = gpt_oss(4, 4);
  c.max_seq_len = 256;
  c.vocab_size = 256;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 32;
  c.channels = 128;
  c.experts_per_token = 2;
  c.intermediate = 128;
  c.sliding_window = 64;
  c.eos_token_id = c.pad_token_id = -1;
  return c;
}

// The four published GPT-2 sizes, a ~1M-parameter model for quick runs (byte vocabulary), and the
// gpt-oss sizes.
const Preset kPresets[] = {
    {"gpt2-124m", {1024, 50257, 12, 12, 768}},
    {"gpt2-350m", {1024, 50257, 24, 16, 1024}},
    {"gpt2-774m", {1024, 50257, 36, 20, 1280}},
    {"gpt2-1558m", {1024, 50257, 48, 25, 1600}},
    {"tiny", {256, 256, 4, 4, 128}},
    {"gpt-oss-20b", gpt_oss(24, 32)},
    {"gpt-oss-120b", gpt_oss(36, 128)},
    {"gpt-oss-tiny", gpt_oss_tiny()},
};

constexpr const char* kSliding = "sliding_attention";
constexpr const char* kFull = "full_attention";

const nlohmann::json& json_field(const nlohmann::json& json, const char* key) {
  if (!json.contains(key)) fail("config.json: missing field '{}'", key);
  return json.at(key);
}

int json_int(const nlohmann::json& json, const char* key, int64_t min = 1) {
  const nlohmann::json& value = json_field(json, key);
  if (!value.is_number_integer()) fail("config.json: field '{}' must be an integer, got {}", key, value.dump());
  int64_t v = value.get<int64_t>();
  if (v < min || v > (int64_t{1} << 30)) fail("config.json: field '{}' = {} is out of range", key, v);
  return static_cast<int>(v);
}

double json_number(const nlohmann::json& json, const char* key) {
  const nlohmann::json& value = json_field(json, key);
  if (!value.is_number()) fail("config.json: field '{}' must be a number, got {}", key, value.dump());
  return value.get<double>();
}

// An optional token id field (absent or null: -1).
int json_token(const nlohmann::json& json, const char* key) {
  if (!json.contains(key) || json.at(key).is_null()) return -1;
  return json_int(json, key, 0);
}

void require_value(const nlohmann::json& json, const char* key, const nlohmann::json& expected) {
  if (json.contains(key) && json.at(key) != expected) {
    fail("config.json: {} = {} is not supported (expected {})", key, json.at(key).dump(),
         expected.dump());
  }
}

ModelConfig gpt2_from_json(const nlohmann::json& json) {
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
  return config;
}

// rope_scaling: absent or null (plain RoPE), or YaRN.
void rope_from_json(const nlohmann::json& json, ModelConfig& config) {
  config.rope_theta = json_number(json, "rope_theta");
  if (!json.contains("rope_scaling") || json.at("rope_scaling").is_null()) return;
  const nlohmann::json& s = json.at("rope_scaling");
  if (!s.is_object()) fail("config.json: rope_scaling must be an object, got {}", s.dump());
  const std::string type = s.value("rope_type", s.value("type", std::string()));
  if (type != "yarn") fail("config.json: rope_scaling type '{}' is not supported (expected \"yarn\")", type);
  config.rope_yarn_factor = json_number(s, "factor");
  config.rope_original_context = json_int(s, "original_max_position_embeddings");
  if (s.contains("beta_fast")) config.rope_beta_fast = json_number(s, "beta_fast");
  if (s.contains("beta_slow")) config.rope_beta_slow = json_number(s, "beta_slow");
  config.rope_truncate = s.value("truncate", true);
}

ModelConfig gpt_oss_from_json(const nlohmann::json& json) {
  ModelConfig config;
  config.family = "gpt_oss";
  config.max_seq_len = json_int(json, "max_position_embeddings");
  config.vocab_size = json_int(json, "vocab_size");
  config.num_layers = json_int(json, "num_hidden_layers");
  config.num_heads = json_int(json, "num_attention_heads");
  config.channels = json_int(json, "hidden_size");
  config.num_kv_heads = json_int(json, "num_key_value_heads");
  config.head_dim = json_int(json, "head_dim");
  config.num_experts = json_int(json, "num_local_experts");
  config.experts_per_token = json.contains("num_experts_per_tok")
                                 ? json_int(json, "num_experts_per_tok")
                                 : json_int(json, "experts_per_token");
  config.intermediate = json_int(json, "intermediate_size");
  config.sliding_window = json_int(json, "sliding_window", 0);
  if (json.contains("layer_types")) {
    const nlohmann::json& types = json.at("layer_types");
    if (!types.is_array()) fail("config.json: layer_types must be an array, got {}", types.dump());
    for (const nlohmann::json& t : types) {
      if (!t.is_string()) fail("config.json: layer_types holds {}, not a string", t.dump());
      config.layer_types.push_back(t.get<std::string>());
    }
  } else {
    for (int l = 0; l < config.num_layers; ++l) config.layer_types.push_back(l % 2 ? kFull : kSliding);
  }
  rope_from_json(json, config);
  if (json.contains("rms_norm_eps")) config.norm_epsilon = static_cast<float>(json_number(json, "rms_norm_eps"));
  if (json.contains("router_aux_loss_coef")) {
    config.router_aux_loss_coef = static_cast<float>(json_number(json, "router_aux_loss_coef"));
  }
  if (json.contains("swiglu_limit")) config.swiglu_limit = static_cast<float>(json_number(json, "swiglu_limit"));
  config.eos_token_id = json_token(json, "eos_token_id");
  config.pad_token_id = json_token(json, "pad_token_id");
  require_value(json, "tie_word_embeddings", false);
  require_value(json, "attention_bias", true);
  if (json.contains("quantization_config") && !json.at("quantization_config").is_null()) {
    const nlohmann::json& q = json.at("quantization_config");
    if (!q.is_object() || q.value("quant_method", std::string()) != "mxfp4") {
      fail("config.json: quantization_config {} is not supported (expected quant_method \"mxfp4\")",
           q.dump());
    }
  }
  return config;
}

nlohmann::json gpt2_to_json(const ModelConfig& config) {
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

nlohmann::json gpt_oss_to_json(const ModelConfig& config) {
  nlohmann::json json = {
      {"model_type", "gpt_oss"},
      {"architectures", {"GptOssForCausalLM"}},
      {"max_position_embeddings", config.max_seq_len},
      {"vocab_size", config.vocab_size},
      {"num_hidden_layers", config.num_layers},
      {"num_attention_heads", config.num_heads},
      {"num_key_value_heads", config.kv_heads()},
      {"head_dim", config.head_size()},
      {"hidden_size", config.channels},
      {"num_local_experts", config.num_experts},
      {"num_experts_per_tok", config.experts_per_token},
      {"experts_per_token", config.experts_per_token},
      {"intermediate_size", config.intermediate},
      {"sliding_window", config.sliding_window},
      {"layer_types", config.layer_types},
      {"rope_theta", config.rope_theta},
      {"rms_norm_eps", config.norm_epsilon},
      {"router_aux_loss_coef", config.router_aux_loss_coef},
      {"swiglu_limit", config.swiglu_limit},
      {"hidden_act", "silu"},
      {"attention_bias", true},
      {"attention_dropout", 0.0},
      {"tie_word_embeddings", false},
      {"eos_token_id", config.eos_token_id >= 0 ? nlohmann::json(config.eos_token_id) : nlohmann::json()},
      {"pad_token_id", config.pad_token_id >= 0 ? nlohmann::json(config.pad_token_id) : nlohmann::json()},
  };
  if (config.rope_yarn_factor != 1.0) {
    json["rope_scaling"] = {{"rope_type", "yarn"},
                            {"factor", config.rope_yarn_factor},
                            {"original_max_position_embeddings", config.rope_original_context},
                            {"beta_fast", config.rope_beta_fast},
                            {"beta_slow", config.rope_beta_slow},
                            {"truncate", config.rope_truncate}};
  }
  return json;
}

void validate_gpt_oss(const ModelConfig& c) {
  require(c.head_size() > 0 && c.head_size() % 2 == 0,
          "model config: head_dim must be positive and even (RoPE pairs), got {}", c.head_size());
  require(c.num_heads % c.kv_heads() == 0,
          "model config: num_key_value_heads ({}) must divide num_attention_heads ({})",
          c.kv_heads(), c.num_heads);
  require(c.num_experts > 0, "model config: num_local_experts must be positive, got {}", c.num_experts);
  require(c.experts_per_token > 0 && c.experts_per_token <= c.num_experts,
          "model config: experts per token ({}) must be in [1, num_local_experts = {}]",
          c.experts_per_token, c.num_experts);
  require(c.intermediate > 0, "model config: intermediate_size must be positive, got {}", c.intermediate);
  require(c.rope_theta > 1.0, "model config: rope_theta must exceed 1, got {}", c.rope_theta);
  require(static_cast<int>(c.layer_types.size()) == c.num_layers,
          "model config: layer_types has {} entries for {} layers", c.layer_types.size(), c.num_layers);
  for (const std::string& t : c.layer_types) {
    require(t == kSliding || t == kFull, "model config: layer type '{}' is not {} or {}", t, kSliding, kFull);
    require(t == kFull || c.sliding_window > 0, "model config: sliding layers need sliding_window > 0");
  }
  const int64_t C = c.channels, E = c.num_experts, I = c.intermediate;
  require(E * 2 * I * C < (int64_t{1} << 31),
          "model config: experts of {} x {} x {} give tensors beyond 2^31 elements", E, 2 * I, C);
}

}  // namespace

int ModelConfig::layer_window(int layer) const {
  if (layer_types.empty()) return 0;
  return layer_types.at(static_cast<size_t>(layer)) == kSliding ? sliding_window : 0;
}

void ModelConfig::validate() const {
  require(family == "gpt2" || family == "gpt_oss",
          "model config: unknown family '{}' (known: gpt2, gpt_oss)", family);
  require(max_seq_len > 0, "model config: n_positions must be positive, got {}", max_seq_len);
  require(vocab_size > 0, "model config: vocab_size must be positive, got {}", vocab_size);
  require(num_layers > 0, "model config: n_layer must be positive, got {}", num_layers);
  require(num_heads > 0, "model config: n_head must be positive, got {}", num_heads);
  require(channels > 0, "model config: n_embd must be positive, got {}", channels);
  if (is_gpt_oss()) {
    validate_gpt_oss(*this);
  } else {
    require(channels % num_heads == 0, "model config: n_embd ({}) must be divisible by n_head ({})",
            channels, num_heads);
  }
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
  const std::string type = json.contains("model_type") && json["model_type"].is_string()
                               ? json["model_type"].get<std::string>()
                               : (json.contains("model_type") ? json["model_type"].dump() : "gpt2");
  ModelConfig config;
  if (type == "gpt2") {
    config = gpt2_from_json(json);
  } else if (type == "gpt_oss") {
    config = gpt_oss_from_json(json);
  } else {
    fail("config.json: model_type \"{}\" is not supported (expected \"gpt2\" or \"gpt_oss\")", type);
  }
  config.validate();
  return config;
}

nlohmann::json config_to_json(const ModelConfig& config) {
  return config.is_gpt_oss() ? gpt_oss_to_json(config) : gpt2_to_json(config);
}

}  // namespace switchyard::model
