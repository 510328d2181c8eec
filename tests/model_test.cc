// The model above the kernels (family gpt2): the initialisation stream, configuration, parameter
// counts and FLOPs, checkpoints (round trip, Hugging Face layout, bad files), gradient
// accumulation, training steps that keep their statistics on the device, decoding over the paged
// KV cache and sampling.
#include <gtest/gtest.h>

#include "expect_error.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <numeric>
#include <span>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "backend/gradient_clipping.h"
#include "core/error.h"
#include "core/fp32_halves.h"
#include "core/rng.h"
#include "random_data.h"
#include "model/checkpoint.h"
#include "model/generator.h"
#include "model/gpt2.h"
#include "model/parameter_storage.h"
#include "model/safetensors.h"
#include "model/sampler.h"
#include "train/lr_schedule.h"

namespace switchyard {
namespace {

namespace fs = std::filesystem;

model::ModelConfig small_config() {
  model::ModelConfig c;
  c.max_seq_len = 11;
  c.vocab_size = 37;
  c.num_layers = 2;
  c.num_heads = 3;
  c.channels = 18;
  return c;
}

fs::path temp_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("switchyard_model_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST(ModelConfig, PresetsHaveThePublishedSizes) {
  auto parameters = [](const std::string& name) {
    return model::ModelShape::of(model::preset(name)).num_parameters();
  };
  EXPECT_EQ(parameters("gpt2-124m"), 124439808);
  EXPECT_EQ(parameters("gpt2-350m"), 354823168);
  EXPECT_EQ(parameters("gpt2-774m"), 774030080);
  EXPECT_EQ(parameters("gpt2-1558m"), 1557611200);
  int64_t tiny = parameters("tiny");
  EXPECT_GT(tiny, 500000);
  EXPECT_LT(tiny, 1500000);
  EXPECT_THROW(model::preset("gpt5"), Error);
  try {
    model::preset("gpt5");
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("gpt2-124m"), std::string::npos);
  }
}

TEST(ModelConfig, ParameterLayoutCoversEveryParameter) {
  model::ModelConfig c = small_config();
  model::ParameterLayout layout = model::gpt2_layout(c);
  size_t sum = 0;
  for (const auto& t : layout.tensors()) sum += t.numel;
  EXPECT_EQ(int64_t(sum), model::ModelShape::of(c).num_parameters());
  EXPECT_EQ(layout.tensors().size(), size_t(2 + 12 * c.num_layers + 2));
}

TEST(ModelConfig, ForwardFlopsMatchAHandCount) {
  model::ModelConfig c;
  c.max_seq_len = 8, c.vocab_size = 10, c.num_layers = 1, c.num_heads = 2, c.channels = 4;
  // Per token: qkv 4x12, proj 4x4, fc 4x16, fc_proj 16x4 = 192 multiply-adds; LM head 4x10 = 40;
  // attention with T = 3: average 2 keys, q.k and att.v each 4 multiply-adds per key = 16.
  EXPECT_DOUBLE_EQ(model::ModelShape::of(c).forward_flops_per_token(3), 2.0 * (192 + 40 + 16));
  // A 3-token prompt: the layers for all three tokens, the LM head for the last one only.
  EXPECT_DOUBLE_EQ(model::ModelShape::of(c).prompt_flops(3), 2.0 * (3 * (192 + 16) + 40));
}

TEST(ModelConfig, JsonRoundTripAndErrors) {
  model::ModelConfig c = small_config();
  model::ModelConfig back = model::config_from_json(model::config_to_json(c));
  EXPECT_EQ(back.channels, c.channels);
  EXPECT_EQ(back.max_seq_len, c.max_seq_len);
  nlohmann::json bad = model::config_to_json(c);
  bad["n_head"] = 5;  // 18 is not divisible by 5
  EXPECT_THROW(model::config_from_json(bad), Error);
  bad = model::config_to_json(c);
  bad.erase("n_embd");
  EXPECT_THROW(model::config_from_json(bad), Error);
  bad = model::config_to_json(c);
  bad["model_type"] = "llama";
  EXPECT_THROW(model::config_from_json(bad), Error);
  bad = model::config_to_json(c);
  bad["n_layer"] = "two";
  EXPECT_THROW(model::config_from_json(bad), Error);
}

// The stream weight initialisation draws from, pinned against an independent computation
// (splitmix64 and Box-Muller in Python), and its parallel fill equal to drawing one at a time.
TEST(Rng, NormalStreamIsPinnedAndFillNormalDrawsTheSameValues) {
  Rng pinned(7);
  EXPECT_FLOAT_EQ(pinned.normal(), 1.3649922974572282f);
  EXPECT_FLOAT_EQ(pinned.normal(), -0.39652397525381783f);
  EXPECT_FLOAT_EQ(pinned.normal(), 0.004498526159832091f);

  const size_t n = 200003;  // above the threshold for the parallel loop
  Rng one_by_one(11), filled(11);
  std::vector<float> want(n), got(n);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(filled.normal(), one_by_one.normal());
  for (float& x : want) x = one_by_one.normal() * 0.02f;
  filled.fill_normal(got.data(), n, 0.02f);
  EXPECT_EQ(got, want);
  EXPECT_EQ(filled.state(), one_by_one.state());
  EXPECT_EQ(filled.next_u64(), one_by_one.next_u64());
  double mean = 0, square = 0;
  for (float x : got) {
    mean += x / 0.02 / n;
    square += (x / 0.02) * (x / 0.02) / n;
  }
  EXPECT_NEAR(mean, 0.0, 0.01);
  EXPECT_NEAR(square, 1.0, 0.02);
}

TEST(Gpt, RejectsTokensOutsideTheVocabularyAndLongSequences) {
  auto backend = backend::create_backend("cpu");
  model::Gpt2 gpt(*backend, small_config());
  gpt.init_random(1);
  std::vector<int32_t> tokens = random_tokens(6, 37, 2);
  tokens[4] = 37;
  EXPECT_THROW(gpt.forward(tokens.data(), nullptr, 2, 3), Error);
  tokens[4] = -1;
  EXPECT_THROW(gpt.forward(tokens.data(), nullptr, 2, 3), Error);
  std::vector<int32_t> long_tokens = random_tokens(12, 37, 3);
  EXPECT_THROW(gpt.forward(long_tokens.data(), nullptr, 1, 12), Error);
}

TEST(Gpt, GradientAccumulationEqualsOneLargeBatch) {
  auto backend = backend::create_backend("cpu");
  model::Gpt2 gpt(*backend, small_config());
  gpt.init_random(5);
  const int B = 4, T = 7;
  std::vector<int32_t> x = random_tokens(B * T, 37, 6), y = random_tokens(B * T, 37, 7);
  gpt.zero_grad();
  gpt.forward(x.data(), y.data(), B, T);
  gpt.backward();
  std::vector<float> full = gpt.gradients_to_host();
  gpt.zero_grad();
  for (int half = 0; half < 2; ++half) {
    gpt.forward(x.data() + half * 2 * T, y.data() + half * 2 * T, 2, T);
    gpt.backward(0.5f);
  }
  std::vector<float> accumulated = gpt.gradients_to_host();
  double diff = 0, norm = 0;
  for (size_t i = 0; i < full.size(); ++i) {
    diff += std::pow(double(full[i]) - accumulated[i], 2);
    norm += double(full[i]) * full[i];
  }
  EXPECT_GT(norm, 0);
  EXPECT_LT(std::sqrt(diff / norm), 1e-5);
}

// begin_step / forward_backward / finish_step keep the loss and the gradient norm on the device;
// they must do exactly what the step's pieces do with the clipping factor worked out on the host.
TEST(Gpt, DeviceResidentStepEqualsItsPieces) {
  auto backend = backend::create_backend("cpu");
  model::Gpt2 pieces(*backend, small_config()), fused(*backend, small_config());
  pieces.init_random(5);
  fused.init_random(5);
  const int B = 4, T = 7, half = B / 2;
  const std::vector<int32_t> x = random_tokens(B * T, 37, 6), y = random_tokens(B * T, 37, 7);
  model::AdamWConfig adamw;
  for (int step = 1; step <= 3; ++step) {
    pieces.zero_grad();
    double loss = 0;
    for (int micro = 0; micro < 2; ++micro) {
      loss += 0.5 * pieces.forward(x.data() + micro * half * T, y.data() + micro * half * T, half, T);
      pieces.backward(0.5f);
    }
    const float norm = pieces.gradient_norm();
    // Clipping on in steps 1 and 3 (at half the norm), off in step 2.
    const float clip = step == 2 ? 0.0f : 0.5f * norm;
    pieces.adamw_step(adamw, 1e-2f, step, backend::clip_scale(norm, clip));

    fused.begin_step();
    for (int micro = 0; micro < 2; ++micro) {
      fused.forward_backward(x.data() + micro * half * T, y.data() + micro * half * T, half, T, 0.5f);
    }
    const model::Model::StepResult result = fused.finish_step(adamw, 1e-2f, step, clip);
    EXPECT_EQ(result.grad_norm, norm) << "step " << step;
    EXPECT_NEAR(result.loss, loss, 1e-6 * loss) << "step " << step;
    EXPECT_EQ(fused.parameters_to_host(), pieces.parameters_to_host()) << "step " << step;
  }
  model::Gpt2 fresh(*backend, small_config());
  expect_error([&] { fresh.forward_backward(x.data(), y.data(), B, T); }, {"begin_step"});
  fresh.begin_step();
  expect_error([&] { fresh.forward_backward(x.data(), nullptr, B, T); }, {"targets"});
}

// Where products read bf16 weights and the backend updates fp32 halves (cpu-bf16), a model holds
// its decayed tensors as halves and the rest as fp32 (model/parameter_storage.h): 4 bytes a
// parameter, no copy. Any fp32 vector set is read back bit for bit, and views of the decayed
// region come as high and low halves, the high halves the values rounded to nearest bf16 (the
// weights products read).
TEST(Model, Bf16ModelsHoldTheirMatricesAsFp32Halves) {
  const model::ModelConfig config = small_config();
  auto bf16 = backend::create_backend("cpu-bf16"), fp32 = backend::create_backend("cpu");
  auto model = model::Model::create(*bf16, config);
  const model::ParameterLayout& layout = model->layout();
  EXPECT_EQ(model::ParameterStorage(*bf16, layout).form(), model::ParameterStorage::Form::kHalves);
  EXPECT_EQ(model::ParameterStorage(*fp32, layout).form(), model::ParameterStorage::Form::kF32);
  Rng rng(3);
  std::vector<float> values(layout.total());
  rng.fill_normal(values.data(), values.size(), 0.05f);
  values[1] = -0.0f, values[2] = 1e-42f, values[3] = std::bit_cast<float>(0x3F808000u);  // a tie
  model->parameters_from_host(values);
  const std::vector<float> back = model->parameters_to_host();
  ASSERT_EQ(back.size(), values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(back[i]), std::bit_cast<uint32_t>(values[i])) << i;
  }
  const size_t decayed = layout.decay_end();
  const std::vector<Tensor> halves = model->parameter_views({0, decayed, true});
  ASSERT_EQ(halves.size(), 2u);
  EXPECT_EQ(halves[0].dtype, DType::kBF16);
  EXPECT_EQ(halves[1].dtype, DType::kU16);
  const uint16_t* high = static_cast<const uint16_t*>(halves[0].data);
  for (size_t i = 0; i < decayed; i += 97) {
    ASSERT_EQ(high[i], fp32_high_half(std::bit_cast<uint32_t>(values[i]))) << i;
  }
  const std::vector<Tensor> rest = model->parameter_views({decayed, layout.total(), false});
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].dtype, DType::kF32);
  expect_error([&] { model->parameter_views({decayed - 1, decayed + 1, false}); },
               {"does not lie inside one decay region"});
}

// Serving's products may keep rearranged copies of a model's weights, keyed by a stamp the model
// renews whenever its weights change (ops::Linear::weight_stamp): a bf16 model over a cache,
// given new parameters or an optimizer step, computes with the new weights: what a model created
// with them computes.
TEST(Model, ProductsOverACacheFollowTheWeightsAsTheyChange) {
  model::ModelConfig config = small_config();
  config.max_seq_len = 40;
  auto backend = backend::create_backend("cpu-bf16");
  auto changed = model::Model::create(*backend, config), fresh = model::Model::create(*backend, config);
  changed->init_random(1);
  fresh->init_random(2);
  const std::vector<int32_t> prompt = random_tokens(32, config.vocab_size, 3);  // 32 rows a product
  auto prefill = [&](model::Model& m) {
    model::Generator generator(m, 1, config.max_seq_len);
    return generator.start(prompt).second;
  };
  const std::vector<float> before = prefill(*changed);
  changed->parameters_from_host(fresh->parameters_to_host());
  const std::vector<float> expected = prefill(*fresh);
  EXPECT_NE(before, expected);
  EXPECT_EQ(prefill(*changed), expected);
  // An optimizer step changes the weights too.
  const std::vector<int32_t> x = random_tokens(2 * 8, config.vocab_size, 4), y = random_tokens(2 * 8, config.vocab_size, 5);
  for (model::Model* m : {changed.get(), fresh.get()}) {
    m->begin_step();
    m->forward_backward(x.data(), y.data(), 2, 8);
    m->finish_step({}, 1e-2f, 1, 1.0f);
  }
  const std::vector<float> stepped = prefill(*fresh);
  EXPECT_NE(stepped, expected);
  EXPECT_EQ(prefill(*changed), stepped);
}

// begin_step leaves the gradients unzeroed until each one's first write (model/gradient_ledger.h):
// a step whose gradient buffer still holds the last step's values must give the gradients of
// zero_grad + forward + backward, bit for bit, in both families and both CPU precisions.
TEST(Model, DeferredZeroingGivesTheGradientsOfZeroGrad) {
  model::ModelConfig oss = model::preset("gpt-oss-tiny");
  oss.num_layers = 2;
  oss.max_seq_len = 16;
  oss.sliding_window = 4;
  oss.layer_types = {"sliding_attention", "full_attention"};
  for (const char* device : {"cpu", "cpu-bf16"}) {
    for (const model::ModelConfig& config : {small_config(), oss}) {
      SCOPED_TRACE(std::string(device) + " " + (config.is_gpt_oss() ? "gpt-oss" : "gpt-2"));
      auto backend = backend::create_backend(device);
      auto eager = model::Model::create(*backend, config), deferred = model::Model::create(*backend, config);
      eager->init_random(5);
      deferred->init_random(5);
      const int B = 2, T = 7;
      const std::vector<int32_t> x = random_tokens(B * T, 37, 6), y = random_tokens(B * T, 37, 7);
      for (model::Model* m : {eager.get(), deferred.get()}) {  // gradients left from a first pass
        m->zero_grad();
        m->forward(y.data(), x.data(), B, T);
        m->backward();
      }
      eager->zero_grad();
      eager->forward(x.data(), y.data(), B, T);
      eager->backward();
      deferred->begin_step();
      deferred->forward_backward(x.data(), y.data(), B, T);
      const std::vector<float> expected = eager->gradients_to_host();
      EXPECT_GT(std::count_if(expected.begin(), expected.end(), [](float g) { return g != 0; }),
                static_cast<long>(expected.size() / 2));
      EXPECT_EQ(deferred->gradients_to_host(), expected);
    }
  }
}

TEST(Gpt, KvCacheDecodingReproducesTheFullForwardPass) {
  auto backend = backend::create_backend("cpu");
  model::ModelConfig c = small_config();
  model::Gpt2 gpt(*backend, c);
  gpt.init_random(9);
  const int T = c.max_seq_len;
  std::vector<int32_t> x = random_tokens(2 * T, c.vocab_size, 10);
  gpt.forward(x.data(), nullptr, 2, T);
  std::vector<float> logits = gpt.logits_to_host();
  // Two sequences over a paged cache, one token of each per decode step.
  model::Generator generator(gpt, 2, T);
  const model::SequenceId sequences[2] = {generator.cache().add_sequence(),
                                          generator.cache().add_sequence()};
  for (int pos = 0; pos < T; ++pos) {
    const std::vector<std::vector<float>> step =
        generator.run({{.sequence = sequences[0], .tokens = {x[pos]}},
                       {.sequence = sequences[1], .tokens = {x[T + pos]}}});
    ASSERT_EQ(step.size(), 2u);
    for (int b = 0; b < 2; ++b)
      for (int v = 0; v < c.vocab_size; ++v)
        EXPECT_NEAR(step[b][v], logits[(size_t(b) * T + pos) * c.vocab_size + v], 1e-4)
            << "b " << b << " pos " << pos << " v " << v;
  }
  // Beyond the context: refused, and the sequence keeps its length.
  EXPECT_THROW(generator.run({{.sequence = sequences[0], .tokens = {0}}}), Error);
  EXPECT_EQ(generator.cache().length(sequences[0]), T);
}

TEST(Checkpoint, SaveLoadRoundTripUsesHuggingFaceLayout) {
  auto backend = backend::create_backend("cpu");
  model::ModelConfig c = small_config();
  model::Gpt2 gpt(*backend, c);
  gpt.init_random(11);
  fs::path dir = temp_dir("roundtrip");
  model::save_model(gpt, dir.string(), {{"tokenizer", "byte"}});

  // The file holds Conv1D [in, out] weights under transformer.* names.
  model::SafetensorsFile file = model::SafetensorsFile::open((dir / "model.safetensors").string());
  const model::TensorInfo* qkv = file.find("transformer.h.1.attn.c_attn.weight");
  ASSERT_NE(qkv, nullptr);
  EXPECT_EQ(qkv->shape, (std::vector<int64_t>{c.channels, 3 * c.channels}));
  std::vector<float> params = gpt.parameters_to_host();
  std::vector<float> file_qkv = file.read_f32("transformer.h.1.attn.c_attn.weight");
  size_t offset = gpt.layout().find("h.1.attn.c_attn.weight")->offset;
  // Element [in = 2, out = 5] of the file is row 5, column 2 of our [out, in] matrix.
  EXPECT_EQ(file_qkv[2 * 3 * c.channels + 5], params[offset + 5 * c.channels + 2]);

  model::Gpt2 loaded(*backend, model::read_config(dir.string()));
  model::load_weights(loaded, dir.string());
  EXPECT_EQ(loaded.parameters_to_host(), params);
  EXPECT_EQ(model::read_switchyard_info(dir.string()).at("tokenizer"), "byte");
  fs::remove_all(dir);
}

TEST(Checkpoint, AcceptsHalfPrecisionAndNamesWithoutPrefix) {
  auto backend = backend::create_backend("cpu");
  model::ModelConfig c = small_config();
  model::Gpt2 gpt(*backend, c);
  gpt.init_random(12);
  fs::path dir = temp_dir("half");
  model::save_model(gpt, dir.string(), {});
  model::SafetensorsFile full = model::SafetensorsFile::open((dir / "model.safetensors").string());
  // Rewrite as bf16 under bare names, the way published GPT-2 directories name tensors.
  model::SafetensorsWriter writer;
  for (const model::TensorInfo& t : full.tensors()) {
    std::vector<float> values = full.read_f32(t.name);
    std::vector<uint16_t> bf16(values.size());
    for (size_t i = 0; i < values.size(); ++i) bf16[i] = float_to_bf16(values[i]);
    writer.add(t.name.substr(std::string("transformer.").size()), DType::kBF16, t.shape, bf16.data());
  }
  std::vector<float> mask(c.max_seq_len * c.max_seq_len, 1.0f);
  writer.add_f32("h.0.attn.bias", {1, 1, c.max_seq_len, c.max_seq_len}, mask.data());  // HF buffer
  writer.write((dir / "model.safetensors").string());
  model::Gpt2 loaded(*backend, c);
  model::load_weights(loaded, dir.string());
  std::vector<float> want = gpt.parameters_to_host(), got = loaded.parameters_to_host();
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], bf16_to_float(float_to_bf16(want[i])));
  fs::remove_all(dir);
}

TEST(Checkpoint, BadCheckpointsGiveClearErrors) {
  auto backend = backend::create_backend("cpu");
  model::ModelConfig c = small_config();
  model::Gpt2 gpt(*backend, c);
  gpt.init_random(13);
  fs::path dir = temp_dir("bad");
  model::save_model(gpt, dir.string(), {});

  EXPECT_NE(error_of([&] { model::read_config((dir / "nope").string()); }).find("does not exist"), std::string::npos);

  // A config.json that disagrees with the tensors.
  model::ModelConfig wider = c;
  wider.channels = 21;
  model::Gpt2 other(*backend, wider);
  std::string message = error_of([&] { model::load_weights(other, dir.string()); });
  EXPECT_NE(message.find("shape"), std::string::npos) << message;

  // Truncated weights.
  fs::path weights = dir / "model.safetensors";
  auto size = fs::file_size(weights);
  fs::resize_file(weights, size - 100);
  message = error_of([&] { model::load_weights(gpt, dir.string()); });
  EXPECT_NE(message.find("model.safetensors"), std::string::npos) << message;

  // A corrupt config.json.
  std::ofstream(dir / "config.json") << "{\"n_layer\": 2,";
  message = error_of([&] { model::read_config(dir.string()); });
  EXPECT_NE(message.find("not valid JSON"), std::string::npos) << message;

  // A missing tensor and an unexpected one.
  model::save_model(gpt, dir.string(), {});
  model::SafetensorsFile full = model::SafetensorsFile::open(weights.string());
  model::SafetensorsWriter writer;
  for (const model::TensorInfo& t : full.tensors()) {
    if (t.name == "transformer.ln_f.bias") continue;
    writer.add(t.name, t.dtype, t.shape, full.raw(t.name).data());
  }
  writer.write(weights.string());
  message = error_of([&] { model::load_weights(gpt, dir.string()); });
  EXPECT_NE(message.find("missing tensor 'ln_f.bias'"), std::string::npos) << message;
  float extra = 1;
  writer.add("transformer.h.9.mystery", DType::kF32, {1}, &extra);
  writer.write(weights.string());
  message = error_of([&] { model::load_weights(gpt, dir.string()); });
  EXPECT_NE(message.find("unexpected tensor"), std::string::npos) << message;
  fs::remove_all(dir);
}

// Greedy sampling picks what std::max_element picks (the first greatest value; a NaN only where
// it comes first) at every length around the vectorised passes' 16 lanes, with ties, NaNs and
// signed zeros.
TEST(Sampler, GreedyPicksTheFirstGreatestAsMaxElementDoes) {
  Rng rng(7);
  const float nan = std::nanf("");
  for (int n : {1, 2, 15, 16, 17, 31, 32, 33, 100, 50257}) {
    for (int variant = 0; variant < 6; ++variant) {
      std::vector<float> x(static_cast<size_t>(n));
      rng.fill_normal(x.data(), x.size(), 1.0f);
      if (variant == 1) std::fill(x.begin(), x.end(), 0.5f);                 // all tied
      if (variant == 2) x[static_cast<size_t>(n) / 2] = nan;                  // a NaN in the middle
      if (variant == 3) x[0] = nan;                                           // a NaN first
      if (variant == 4) for (float& v : x) v = (v > 0 ? -0.0f : 0.0f) - 1.0f; // ties at -1
      if (variant == 5) { std::fill(x.begin(), x.end(), -1.0f); x.back() = -0.0f; if (n > 1) x[0] = 0.0f; }
      const auto expected = std::max_element(x.begin(), x.end()) - x.begin();
      EXPECT_EQ(model::sample_token(x, {0.0f, 0, 1.0f}, rng), expected) << "n " << n << " variant " << variant;
    }
  }
}

// Top-p draws by the definition: every token sorted (most likely first, ties by id), the shares
// added in that order until they reach top_p, one uniform draw over what is kept.
int32_t top_p_by_definition(const std::vector<float>& logits, float temperature, float top_p, Rng& rng) {
  const int V = static_cast<int>(logits.size());
  std::vector<int32_t> order(V);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  const double max_logit = logits[order[0]];
  std::vector<double> weights(V);
  double total = 0;
  for (int i = 0; i < V; ++i) total += weights[i] = std::exp((logits[i] - max_logit) / temperature);
  double cumulative = 0, kept = 0;
  size_t keep = order.size();
  for (size_t i = 0; i < order.size(); ++i) {
    cumulative += weights[order[i]] / total;
    if (cumulative >= top_p) {
      keep = i + 1;
      break;
    }
  }
  for (size_t i = 0; i < keep; ++i) kept += weights[order[i]];
  double r = static_cast<double>(rng.uniform()) * kept;
  for (size_t i = 0; i < keep; ++i) {
    r -= weights[order[i]];
    if (r < 0) return order[i];
  }
  return order[keep - 1];
}

// Logits with NaNs (a broken model's) give some token id in range at every setting, never a crash.
TEST(Sampler, NanLogitsGiveATokenInRange) {
  Rng values(5);
  std::vector<float> logits(3000);
  values.fill_normal(logits.data(), logits.size(), 2.0f);
  for (size_t i = 0; i < logits.size(); i += 7) logits[i] = std::nanf("");
  Rng rng(1);
  for (const model::SamplingOptions& o : {model::SamplingOptions{0.0f, 0, 1.0f}, {1.0f, 0, 1.0f},
                                          {1.0f, 50, 1.0f}, {1.0f, 0, 0.9f}, {0.7f, 40, 0.95f}}) {
    for (int draw = 0; draw < 20; ++draw) {
      const int32_t t = model::sample_token(logits, o, rng);
      EXPECT_TRUE(t >= 0 && t < 3000) << t;
    }
  }
}

// Top-p without top-k selects its candidates instead of sorting the vocabulary: the same tokens as
// the definition, for nuclei of a few tokens to nearly all of them.
TEST(Sampler, TopPDrawsWhatTheDefinitionDraws) {
  Rng values(3);
  for (float spread : {0.2f, 2.0f, 8.0f}) {
    for (float top_p : {0.5f, 0.9f, 0.999f}) {
      std::vector<float> logits(5000);
      values.fill_normal(logits.data(), logits.size(), spread);
      Rng a(11), b(11);
      for (int draw = 0; draw < 100; ++draw) {
        ASSERT_EQ(model::sample_token(logits, {0.8f, 0, top_p}, a), top_p_by_definition(logits, 0.8f, top_p, b))
            << "spread " << spread << ", top_p " << top_p << ", draw " << draw;
      }
    }
  }
}

// The draws' weights agree with std::exp's to a few ulp over the whole range a softmax weight
// takes (e^0 down to past double's normal range), at any temperature and length; -inf gives 0 and
// a NaN logit a NaN total.
TEST(Sampler, SoftmaxWeightsAreTheExponentialsToAFewUlp) {
  std::vector<float> logits;
  for (float x = -760.0f; x <= 0.0f; x += 0.37f) logits.push_back(x);
  Rng rng(9);
  for (int i = 0; i < 1000; ++i) logits.push_back(static_cast<float>(-40.0 * rng.uniform()));
  logits.push_back(0.0f);
  logits.push_back(-std::numeric_limits<float>::infinity());
  for (const double temperature : {1.0, 0.7, 2.5}) {
    for (const size_t n : {logits.size(), size_t{13}, size_t{3}}) {
      const std::span<const float> part(logits.data() + logits.size() - n, n);
      std::vector<double> weights(n);
      const double total = model::softmax_weights(part, 0.0, temperature, weights);
      double want_total = 0;
      for (size_t i = 0; i < n; ++i) {
        const double x = part[i] / temperature;
        const double want = x < -708.0 ? 0.0 : std::exp(x);
        want_total += want;
        ASSERT_NEAR(weights[i], want, 4e-16 * want) << "x " << x;
      }
      EXPECT_NEAR(total, want_total, 1e-14 * want_total) << "temperature " << temperature;
    }
  }
  std::vector<float> with_nan = {0.0f, -1.0f, std::nanf(""), -2.0f};
  std::vector<double> weights(with_nan.size());
  EXPECT_TRUE(std::isnan(model::softmax_weights(with_nan, 0.0, 1.0, weights)));
}

TEST(Sampler, GreedyTopKAndTopP) {
  std::vector<float> logits = {0.0f, 3.0f, 1.0f, 2.9f};
  Rng rng(1);
  EXPECT_EQ(model::sample_token(logits, {0.0f, 0, 1.0f}, rng), 1);
  // top-k 1 is greedy whatever the temperature.
  for (int i = 0; i < 50; ++i) EXPECT_EQ(model::sample_token(logits, {1.0f, 1, 1.0f}, rng), 1);
  // top-k 2 never picks the two least likely tokens; both others appear.
  int counts[4] = {};
  for (int i = 0; i < 2000; ++i) counts[model::sample_token(logits, {1.0f, 2, 1.0f}, rng)]++;
  EXPECT_EQ(counts[0] + counts[2], 0);
  EXPECT_GT(counts[1], 800);
  EXPECT_GT(counts[3], 800);
  // Sampling without limits follows softmax: token 0 has probability e^0 / sum.
  int zero = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) zero += model::sample_token(logits, {1.0f, 0, 1.0f}, rng) == 0;
  double sum = 1 + std::exp(3.0) + std::exp(1.0) + std::exp(2.9);
  EXPECT_NEAR(zero / double(n), 1 / sum, 0.01);
  // top-p 0.5: the most likely token has probability 0.48, so the nucleus is {1, 3}.
  for (int i = 0; i < 200; ++i) {
    int t = model::sample_token(logits, {1.0f, 0, 0.5f}, rng);
    EXPECT_TRUE(t == 1 || t == 3);
  }
  EXPECT_THROW(model::validate({-1.0f, 0, 1.0f}), Error);
  EXPECT_THROW(model::validate({1.0f, 0, 0.0f}), Error);
}

TEST(LrSchedule, WarmupThenCosineToTheMinimum) {
  train::LrSchedule s{1.0f, 0.1f, 4, 15};
  EXPECT_FLOAT_EQ(s.at(0), 0.25f);
  EXPECT_FLOAT_EQ(s.at(3), 1.0f);
  EXPECT_FLOAT_EQ(s.at(4), 1.0f);
  EXPECT_NEAR(s.at(14), 0.1f, 1e-6);
  EXPECT_NEAR(s.at(9), 0.55f, 1e-6);  // half way down the cosine
}

}  // namespace
}  // namespace switchyard
