// The gpt-oss family above the kernels: the presets' published sizes and the memory arithmetic
// ModelShape gives the planner, config.json both ways, checkpoints written by the engine read
// back, and frozen (inference-only) weights held in the published dtypes.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "core/error.h"
#include "model/checkpoint.h"
#include "model/gpt_oss.h"
#include "temp_dir_test_base.h"

namespace switchyard {
namespace {

// A small gpt-oss with every feature and sizes that MXFP4 blocks fit (hidden and intermediate
// multiples of 32).
model::ModelConfig small_config() {
  model::ModelConfig c = model::preset("gpt-oss-tiny");
  c.num_layers = 3;
  c.layer_types = {"sliding_attention", "full_attention", "sliding_attention"};
  c.channels = 96;
  c.num_heads = 6;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.num_experts = 5;
  c.experts_per_token = 2;
  c.intermediate = 64;
  c.sliding_window = 8;
  c.vocab_size = 300;
  c.max_seq_len = 64;
  return c;
}

TEST(GptOssShape, PresetsHaveThePublishedParameterCounts) {
  // OpenAI's model card: 20.91B parameters, 3.61B active per token; 116.83B and 5.13B.
  const model::ModelShape small = model::ModelShape::of(model::preset("gpt-oss-20b"));
  EXPECT_EQ(small.num_parameters(), 20'914'757'184);
  EXPECT_EQ(small.parameters_read_per_token(), 3'608'310'144);
  const model::ModelShape large = model::ModelShape::of(model::preset("gpt-oss-120b"));
  EXPECT_EQ(large.num_parameters(), 116'829'156'672);
  EXPECT_EQ(large.parameters_read_per_token(), 5'132'852'352);
  // MXFP4 experts (4.25 bits with their scales) and bf16 for the rest: about 3.7 GB a token.
  // Active expert matrices 24 x 4 x 3 x 2880^2 at 4.25 bits, the other 1,219,522,944 read at 16.
  EXPECT_DOUBLE_EQ(small.weight_bytes_read_per_token(4.25, 16), 1'269'043'200.0 + 2'439'045'888.0);
  // 24 layers x 8 kv heads x 64 x 2 (k and v); sliding layers keep 128 positions only.
  EXPECT_EQ(small.kv_elements_per_token(), 24 * 8 * 64 * 2);
  EXPECT_EQ(small.kv_elements(4096), 8 * 64 * 2 * (12 * 4096 + 12 * 128));
}

TEST(GptOssShape, FlopsCountTheChosenExpertsAndTheWindows) {
  const model::ModelConfig c = small_config();
  const model::ModelShape s = model::ModelShape::of(c);
  const double C = 96, qkv = (6 + 4) * 16, attn = 96, I = 64, V = 300;
  const double products = 2 * (C * qkv + attn * C + 2 * 3 * C * I + 5 * C);
  // T = 20 tokens: full layers see (T + 1) / 2 keys on average, sliding ones (36 + 12 * 8) / 20.
  const double keys = 1 * 10.5 + 2 * (36.0 + 12 * 8) / 20;
  EXPECT_DOUBLE_EQ(s.forward_flops_per_token(20), 3 * products + 4 * attn * keys + 2 * C * V);
}

TEST(GptOssConfig, JsonRoundTripAndErrors) {
  const model::ModelConfig c = small_config();
  const nlohmann::json json = model::config_to_json(c);
  EXPECT_EQ(json["model_type"], "gpt_oss");
  const model::ModelConfig back = model::config_from_json(json);
  EXPECT_EQ(model::config_to_json(back), json);
  nlohmann::json bad = json;
  bad["layer_types"] = {"sliding_attention"};
  EXPECT_THROW(model::config_from_json(bad), Error);
  bad = json;
  bad["num_experts_per_tok"] = 9;
  EXPECT_THROW(model::config_from_json(bad), Error);
  bad = json;
  bad["rope_scaling"]["rope_type"] = "linear";
  EXPECT_THROW(model::config_from_json(bad), Error);
  bad = json;
  bad["tie_word_embeddings"] = true;
  EXPECT_THROW(model::config_from_json(bad), Error);
}

class GptOssCheckpoints : public TempDirTest {};

TEST_F(GptOssCheckpoints, SavedCheckpointsLoadBackExactly) {
  auto backend = backend::create_backend("cpu");
  auto m = model::Model::create(*backend, small_config());
  m->init_random(7);
  model::save_model(*m, path("ckpt"), {});
  EXPECT_EQ(model::read_config(path("ckpt")).num_experts, 5);
  auto loaded = model::Model::create(*backend, model::read_config(path("ckpt")));
  model::load_weights(*loaded, path("ckpt"));
  EXPECT_EQ(loaded->parameters_to_host(), m->parameters_to_host());
  // Experts are written in Hugging Face's unquantised orientation, [E, in, out].
  const model::SafetensorsSet set = model::SafetensorsSet::open(path("ckpt"));
  EXPECT_EQ(set.find("model.layers.0.mlp.experts.gate_up_proj")->shape,
            (std::vector<int64_t>{5, 96, 128}));
}

TEST_F(GptOssCheckpoints, LossyCheckpointsKeepTheExactWeightsInTheTrainingState) {
  auto backend = backend::create_backend("cpu");
  auto m = model::Model::create(*backend, small_config());
  m->init_random(7);
  const std::vector<float> weights = m->parameters_to_host();
  model::TrainingState state;
  state.step = 3;
  const model::SaveFormat lossy{.dtype = DType::kBF16, .mxfp4_experts = true};
  model::save_training_checkpoint(*m, path("lossy"), nlohmann::json::object(), state, lossy);
  auto loaded = model::Model::create(*backend, model::read_config(path("lossy")));
  model::load_weights(*loaded, path("lossy"));
  EXPECT_NE(loaded->parameters_to_host(), weights);
  EXPECT_EQ(model::load_training_state(*loaded, path("lossy")).step, 3);
  EXPECT_EQ(loaded->parameters_to_host(), weights);
  // An fp32 weights file is exact: the state holds no second copy.
  model::save_training_checkpoint(*m, path("exact"), nlohmann::json::object(), state);
  EXPECT_EQ(model::SafetensorsFile::open(path("exact") + "/training_state.safetensors").find("parameters"), nullptr);
}

TEST_F(GptOssCheckpoints, NonFiniteWeightsAreNamedWhenQuantised) {
  auto backend = backend::create_backend("cpu");
  auto m = model::Model::create(*backend, small_config());
  m->init_random(7);
  std::vector<float> weights = m->parameters_to_host();
  // down_proj is [5 experts, 96, 64]: expert 1, row 5, column 7 is row 101 of the stack.
  const model::ParameterTensor* t = m->layout().find("model.layers.2.mlp.experts.down_proj");
  weights[t->offset + (96 + 5) * 64 + 7] = INFINITY;
  m->parameters_from_host(weights);
  try {
    model::save_model(*m, path("ckpt"), {}, {.mxfp4_experts = true});
    FAIL() << "an infinite weight was quantised";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'model.layers.2.mlp.experts.down_proj' holds inf at row 101, column 7"),
              std::string::npos) << e.what();
  }
}

TEST(GptOssFrozen, RandomWeightsTakeThePublishedDtypes) {
  auto backend = backend::create_backend("cpu");
  const model::ModelConfig c = small_config();
  auto m = model::Model::create_frozen(*backend, c, {.seed = 3});
  const model::ModelShape s = model::ModelShape::of(c);
  // Vectors are held as fp32 where the formula counts 16 bits: per layer two norms (2 x 96), the
  // q|k|v and o biases (160 + 96), 6 sinks, 5 router biases and the chosen experts' biases
  // (2 x (128 + 96)); and the final norm.
  const double vectors_read = 3 * (2 * 96 + 160 + 96 + 6 + 5 + 2 * (128 + 96)) + 96;
  EXPECT_DOUBLE_EQ(m->weight_bytes_read_per_token(), s.weight_bytes_read_per_token(4.25, 16) + 2 * vectors_read);
  EXPECT_LT(m->weight_bytes(), 4 * s.num_parameters() / 2);
  EXPECT_THROW(m->init_random(1), Error);
}

}  // namespace
}  // namespace switchyard
