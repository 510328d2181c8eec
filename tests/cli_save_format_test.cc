// Checkpoints that `train` writes in bf16 and with MXFP4 experts (--save-dtype, --save-mxfp4): the
// files hold the published gpt-oss layout (names, dtypes and shapes as in the reference checkpoints
// tools/make_gpt_oss_reference.py wrote), the MXFP4 tensors are the quantised trained weights,
// generate and the training load path see the weights this test decodes itself, a resumed run
// equals an uninterrupted one bit for bit, and GPT-2 refuses MXFP4 in one line.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/mxfp4_quantize.h"
#include "core/rng.h"
#include "model/checkpoint.h"
#include "model/generator.h"
#include "model/gpt_oss.h"
#include "model/safetensors.h"
#include "model/safetensors_set.h"
#include "shell_command.h"
#include "temp_dir_test_base.h"

namespace switchyard {
namespace {

namespace fs = std::filesystem;

const std::string kData = SWITCHYARD_TEST_DATA;
const std::string kPublished = kData + "/gpt_oss_reference";
const std::string kFp32 = kData + "/gpt_oss_reference_fp32";
const std::vector<int32_t> kPrompt = {72, 101, 108, 108, 111, 44};
constexpr int kNewTokens = 12;

// The JSON object on the last line of `output`.
nlohmann::json last_json_line(const std::string& output) {
  const size_t start = output.rfind("\n{");
  return nlohmann::json::parse(output.substr(start == std::string::npos ? 0 : start + 1));
}

std::string joined(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

// name -> "DTYPE [shape]" of every tensor of a checkpoint directory (shards included).
std::map<std::string, std::string> tensor_layout(const std::string& dir) {
  std::map<std::string, std::string> out;
  const model::SafetensorsSet set = model::SafetensorsSet::open(dir);
  for (const model::TensorInfo* t : set.tensors()) {
    std::string shape;
    for (int64_t d : t->shape) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    out[t->name] = std::string(dtype_name(t->dtype)) + " [" + shape + "]";
  }
  return out;
}

std::vector<uint8_t> bytes_of(std::span<const uint8_t> raw) { return {raw.begin(), raw.end()}; }

// The fp32 weights a lossy checkpoint keeps in its training state.
std::vector<float> master_weights(const std::string& dir) {
  return model::SafetensorsFile::open(dir + "/training_state.safetensors").read_f32("parameters");
}

class CliSaveFormat : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    text_ = path("corpus.txt");
    std::ofstream out(text_);
    for (int i = 0; i < 300; ++i) out << "Now is the winter of our discontent, made glorious summer " << i % 13 << ".\n";
  }
  // A tiny gpt-oss whose hidden (64) and intermediate (32) sizes are whole MXFP4 blocks.
  std::string train_args(const std::string& out, int steps) const {
    // fp32: the resumed run must repeat the losses exactly, which needs sums that do not depend
    // on the thread count.
    return "train --model gpt-oss-tiny --dtype fp32 --n-layer 2 --n-embd 64 --n-head 4 --n-kv-head 2 --head-dim 16"
           " --experts 3 --experts-per-token 2 --intermediate 32 --window 16 --n-positions 64 --data " +
           text_ + " --out " + out + " --batch 2 --seq 32 --warmup 1 --lr 3e-3 --steps " + std::to_string(steps);
  }
  // Trains the checkpoint `dir` from the reference checkpoint `from` (odd sizes, published names).
  void train_from(const std::string& from, const std::string& dir, const std::string& flags) {
    const ShellResult r = run_cli("train --model " + from + " --tokenizer byte --data " + text_ + " --out " + dir +
                                  " --batch 2 --seq 16 --steps 2 " + flags);
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }

  // generate (frozen weights, as stored) and the training load path (load_weights) on checkpoint
  // `dir` against a model holding `weights`: the same parameters, logits and greedy ids.
  static void expect_loads_as(const std::string& dir, const std::vector<float>& weights) {
    const model::ModelConfig config = model::read_config(dir);
    auto backend = backend::create_backend("cpu");
    auto want = model::Model::create(*backend, config);
    want->parameters_from_host(weights);
    auto loaded = model::Model::create(*backend, config);
    model::load_weights(*loaded, dir);
    EXPECT_EQ(loaded->parameters_to_host(), weights);
    model::Generator want_run(*want, 1, 64), loaded_run(*loaded, 1, 64);
    EXPECT_EQ(loaded_run.start(kPrompt).second, want_run.start(kPrompt).second);

    model::Generator generator(*want, 1, static_cast<int>(kPrompt.size()) + kNewTokens);
    Rng rng(1);
    const model::GenerateResult greedy = model::generate(
        generator, kPrompt,
        {.max_new_tokens = kNewTokens, .sampling = {.temperature = 0}, .stop_tokens = {config.eos_token_id}},
        rng, [](int32_t) {});
    const ShellResult r = run_cli("generate --model " + dir + " --prompt-ids " + joined(kPrompt) +
                                  " --temperature 0 -n " + std::to_string(kNewTokens) + " --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(last_json_line(r.output)["generated_ids"].get<std::vector<int32_t>>(), greedy.tokens);
  }

  std::string text_;
};

TEST_F(CliSaveFormat, Mxfp4ExpertsAreTheQuantisedWeightsAndLoadAsDecoded) {
  const std::string dir = path("mxfp4");
  const ShellResult r = run_cli(train_args(dir, 2) + " --save-mxfp4");
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const model::ParameterLayout layout = model::gpt_oss_layout(model::read_config(dir));
  const std::vector<float> master = master_weights(dir);
  ASSERT_EQ(master.size(), layout.total());
  const model::SafetensorsFile file = model::SafetensorsFile::open(dir + "/model.safetensors");
  // The weights this test decodes itself: FP4 code times 2^(scale - 127), low nibble first.
  std::vector<float> decoded = master;
  int quantised = 0;
  for (const model::ParameterTensor& t : layout.tensors()) {
    if (!t.published_mxfp4) {
      EXPECT_EQ(file.find(t.name)->dtype, DType::kF32) << t.name;
      EXPECT_EQ(file.read_f32(t.name),
                std::vector<float>(master.begin() + t.offset, master.begin() + t.offset + t.numel)) << t.name;
      continue;
    }
    ++quantised;
    EXPECT_EQ(file.find(t.name), nullptr) << t.name;
    const int64_t cols = t.shape.back();
    const std::span<const uint8_t> blocks = file.raw(t.name + "_blocks"), scales = file.raw(t.name + "_scales");
    const Mxfp4Tensor want = quantize_mxfp4(t.name, std::span<const float>(master.data() + t.offset, t.numel), cols);
    EXPECT_EQ(bytes_of(blocks), want.blocks) << t.name;
    EXPECT_EQ(bytes_of(scales), want.scales) << t.name;
    ASSERT_EQ(blocks.size() * 2, t.numel);
    for (size_t i = 0; i < t.numel; ++i) {
      const int code = (blocks[i / 2] >> (4 * (i % 2))) & 0xF;
      decoded[t.offset + i] = std::ldexp(kFp4E2M1Values[code], static_cast<int>(scales[i / 32]) - 127);
    }
  }
  EXPECT_EQ(quantised, 4);  // two expert matrices in each of two layers
  EXPECT_NE(decoded, master);
  expect_loads_as(dir, decoded);
}

TEST_F(CliSaveFormat, Bf16WeightsAreTheRoundedWeightsAndLoadAsThem) {
  const std::string dir = path("bf16");
  const ShellResult r = run_cli(train_args(dir, 2) + " --save-dtype bf16");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::vector<float> master = master_weights(dir);
  std::vector<float> rounded(master.size());
  for (size_t i = 0; i < master.size(); ++i) rounded[i] = bf16_to_float(float_to_bf16(master[i]));
  EXPECT_NE(rounded, master);
  for (const auto& [name, layout] : tensor_layout(dir)) EXPECT_TRUE(layout.starts_with("bf16 ")) << name;
  expect_loads_as(dir, rounded);
}

TEST_F(CliSaveFormat, FilesHaveThePublishedLayout) {
  // MXFP4 experts and bf16 elsewhere: the published MXFP4 checkpoint's tensors and config.
  const std::string mxfp4 = path("mxfp4");
  train_from(kPublished, mxfp4, "--save-mxfp4 --save-dtype bf16");
  EXPECT_EQ(tensor_layout(mxfp4), tensor_layout(kPublished));
  const nlohmann::json config = nlohmann::json::parse(std::ifstream(mxfp4 + "/config.json"));
  const nlohmann::json published = nlohmann::json::parse(std::ifstream(kPublished + "/config.json"));
  EXPECT_EQ(config["quantization_config"], published["quantization_config"]);
  EXPECT_EQ(config["torch_dtype"], "bfloat16");

  // bf16 alone: the unquantised layout (experts [E, in, out]), every tensor bf16.
  const std::string bf16 = path("bf16");
  train_from(kFp32, bf16, "--save-dtype bf16");
  std::map<std::string, std::string> want = tensor_layout(kFp32);
  for (auto& [name, layout] : want) layout.replace(0, layout.find(' '), "bf16");
  EXPECT_EQ(tensor_layout(bf16), want);
  EXPECT_FALSE(nlohmann::json::parse(std::ifstream(bf16 + "/config.json")).contains("quantization_config"));
}

TEST_F(CliSaveFormat, ResumingAnMxfp4CheckpointEqualsAnUninterruptedRun) {
  const std::string lossy = " --save-mxfp4 --save-dtype bf16";
  ShellResult r = run_cli(train_args(path("full"), 4) + lossy);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  // A tiny time limit stops after the first step with a checkpoint, whose weights file alone would
  // not continue the run: its weights are not the ones trained.
  const std::string split = path("split");
  r = run_cli(train_args(split, 4) + lossy + " --time-limit 0.000001");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ASSERT_NE(r.output.find("time limit"), std::string::npos) << r.output;
  {
    auto backend = backend::create_backend("cpu");
    auto m = model::Model::create(*backend, model::read_config(split));
    model::load_weights(*m, split);
    EXPECT_NE(m->parameters_to_host(), master_weights(split));
  }
  // The resumed run takes the save format from the checkpoint's record.
  r = run_cli("train --out " + split + " --resume --time-limit 0");
  ASSERT_EQ(r.exit_code, 0) << r.output;

  std::ifstream full_log(path("full/log.jsonl")), split_log(split + "/log.jsonl");
  std::vector<double> full_losses, split_losses;
  for (auto [in, losses] : {std::pair{&full_log, &full_losses}, std::pair{&split_log, &split_losses}}) {
    for (std::string line; std::getline(*in, line);) {
      const nlohmann::json record = nlohmann::json::parse(line);
      if (record.contains("loss")) losses->push_back(record["loss"].get<double>());
    }
  }
  ASSERT_EQ(full_losses.size(), 4u);
  EXPECT_EQ(split_losses, full_losses);
  const model::SafetensorsSet full_weights = model::SafetensorsSet::open(path("full")),
                             split_weights = model::SafetensorsSet::open(split);
  EXPECT_NE(full_weights.find("model.layers.0.mlp.experts.down_proj_blocks"), nullptr);
  EXPECT_EQ(tensor_layout(split), tensor_layout(path("full")));
  for (const model::TensorInfo* t : full_weights.tensors()) {
    EXPECT_EQ(bytes_of(split_weights.raw(t->name)), bytes_of(full_weights.raw(t->name))) << t->name;
  }
  const model::SafetensorsFile full_state = model::SafetensorsFile::open(path("full/training_state.safetensors")),
                               split_state = model::SafetensorsFile::open(split + "/training_state.safetensors");
  for (const char* name : {"parameters", "adam_m", "adam_v"}) {
    EXPECT_EQ(bytes_of(split_state.raw(name)), bytes_of(full_state.raw(name))) << name;
  }
}

TEST_F(CliSaveFormat, Gpt2RefusesMxfp4InOneLine) {
  const ShellResult r = run_cli("train --model tiny --data " + text_ + " --out " + path("gpt2") +
                                " --batch 2 --seq 32 --steps 2 --save-mxfp4");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_EQ(r.output, "error: --save-mxfp4 quantises gpt-oss's expert weights; a gpt2 model has none\n");
  EXPECT_FALSE(fs::exists(path("gpt2/model.safetensors")));
}

}  // namespace
}  // namespace switchyard
