// gpt-oss through the command-line tool: greedy generation from the published layout and from the
// fp32 checkpoint gives the PyTorch reference's ids; a small preset trains, evaluates, resumes and
// generates; chat refuses what it cannot speak; every bad input ends with one line naming the file
// or tensor and a non-zero exit.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/safetensors.h"
#include "shell_command.h"
#include "temp_dir_test_base.h"

namespace switchyard {
namespace {

namespace fs = std::filesystem;

const std::string kData = SWITCHYARD_TEST_DATA;
const std::string kPublished = kData + "/gpt_oss_reference";
const std::string kFp32 = kData + "/gpt_oss_reference_fp32";
const std::string kShakespeare = std::string(SWITCHYARD_SHARED_DATA) + "/tinyshakespeare.txt";

std::vector<int32_t> reference_ids(const std::string& name) {
  const model::SafetensorsFile file = model::SafetensorsFile::open(kData + "/gpt_oss_reference.safetensors");
  const std::span<const uint8_t> raw = file.raw(name);
  std::vector<int32_t> ids(raw.size() / sizeof(int32_t));
  std::memcpy(ids.data(), raw.data(), raw.size());
  return ids;
}

std::string joined(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

// The JSON object on the last line of `output`.
nlohmann::json last_json_line(const std::string& output) {
  const size_t start = output.rfind("\n{");
  return nlohmann::json::parse(output.substr(start == std::string::npos ? 0 : start + 1));
}

class CliGptOss : public TempDirTest {
 protected:
  // A copy of the published checkpoint to damage.
  std::string copy_published() {
    const std::string dir = path("model");
    fs::copy(kPublished, dir, fs::copy_options::recursive);
    return dir;
  }
  static void edit_json(const std::string& file, const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j = nlohmann::json::parse(std::ifstream(file));
    edit(j);
    std::ofstream(file) << j.dump(2);
  }
  // Runs generate on `model` and expects failure with `message` in the output.
  static void expect_refused(const std::string& model, const std::string& message) {
    const ShellResult r = run_cli("generate --model " + model + " --prompt-ids 1,2,3 -n 2");
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_NE(r.output.find(message), std::string::npos) << r.output;
  }
};

TEST_F(CliGptOss, GreedyIdsFromBothCheckpointsMatchTheReference) {
  const std::string prompt = joined(reference_ids("greedy.prompt"));
  for (const auto& [dir, want] : {std::pair{kFp32, "greedy.fp32"}, std::pair{kPublished, "greedy.mxfp4"}}) {
    const ShellResult r = run_cli("generate --model " + dir + " --prompt-ids " + prompt +
                                  " --dtype fp32 --temperature 0 -n 64 --json");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const nlohmann::json j = last_json_line(r.output);
    EXPECT_EQ(j["prompt_ids"].get<std::vector<int32_t>>(), reference_ids("greedy.prompt"));
    EXPECT_EQ(j["generated_ids"].get<std::vector<int32_t>>(), reference_ids(want)) << dir;
  }
}

TEST_F(CliGptOss, SmallPresetTrainsEvaluatesResumesAndGenerates) {
  const std::string out = path("run");
  const std::string shape = " --n-layer 2 --n-embd 64 --n-head 4 --n-kv-head 2 --head-dim 16 --experts 3"
                            " --experts-per-token 2 --intermediate 32 --window 16 --n-positions 64";
  ShellResult r = run_cli("train --model gpt-oss-tiny" + shape + " --data " + kShakespeare +
                          " --out " + out + " --steps 20 --batch 4 --seq 48");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::regex loss_re("step +([0-9]+)/20 \\| loss ([0-9.]+)");
  std::vector<double> losses;
  for (std::sregex_iterator it(r.output.begin(), r.output.end(), loss_re), end; it != end; ++it) {
    losses.push_back(std::stod((*it)[2]));
  }
  ASSERT_GE(losses.size(), 2u) << r.output;
  EXPECT_LT(losses.back(), losses.front() - 0.5) << r.output;  // from ~5.5 (uniform over bytes)

  const nlohmann::json config = nlohmann::json::parse(std::ifstream(out + "/config.json"));
  EXPECT_EQ(config["model_type"], "gpt_oss");
  EXPECT_EQ(config["num_local_experts"], 3);
  EXPECT_EQ(config["layer_types"], nlohmann::json({"sliding_attention", "full_attention"}));

  r = run_cli("eval --model " + out + " --data " + kShakespeare + " --seq 48 --max-windows 4 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_LT(last_json_line(r.output)["loss"].get<double>(), losses.front());

  r = run_cli("train --resume --out " + out + " --steps 25");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("step 25/25"), std::string::npos) << r.output;

  r = run_cli("generate --model " + out + " --prompt-ids 72,105 --temperature 0 -n 8 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(last_json_line(r.output)["generated_ids"].size(), 8u);
}

TEST_F(CliGptOss, ChatNeedsAGptOssModelAndTheHarmonyTokenizer) {
  ShellResult r = run_cli("chat --model tiny --message hi");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("chat needs a gpt-oss model"), std::string::npos) << r.output;
  r = run_cli("chat --model gpt-oss-tiny --tokenizer byte --message hi");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("needs the o200k tokenizer"), std::string::npos) << r.output;
  // Random weights write no harmony header: the reply is refused with the parser's reason, after
  // the conversation was rendered and the model ran.
  const std::string o200k = "SWITCHYARD_O200K=" + std::string(SWITCHYARD_SHARED_DATA) +
                            "/o200k/o200k_base.tiktoken ";
  r = run_cli("chat --model gpt-oss-tiny --vocab-size 201088 --n-embd 64 --head-dim 16 --message hi"
              " --temperature 0 -n 4", o200k);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("the model's reply is not in the harmony format"), std::string::npos) << r.output;
}

TEST_F(CliGptOss, BadCheckpointsAreRefusedNamingTheFileOrTensor) {
  const std::string dir = copy_published();
  fs::rename(dir + "/model-00002-of-00002.safetensors", path("moved"));
  expect_refused(dir, "model-00002-of-00002.safetensors: no such file");
  fs::rename(path("moved"), dir + "/model-00002-of-00002.safetensors");

  const std::string index = dir + "/model.safetensors.index.json";
  const std::string original_index = path("index");
  fs::copy_file(index, original_index);
  edit_json(index, [](nlohmann::json& j) {
    j["weight_map"]["model.layers.0.mlp.router.extra"] = "model-00001-of-00002.safetensors";
  });
  expect_refused(dir, "tensor 'model.layers.0.mlp.router.extra' in model-00001-of-00002.safetensors, which does not hold it");
  fs::copy_file(original_index, index, fs::copy_options::overwrite_existing);
  edit_json(index, [](nlohmann::json& j) {
    j["weight_map"].erase("model.layers.2.mlp.experts.down_proj_scales");
  });
  expect_refused(dir, "holds tensor 'model.layers.2.mlp.experts.down_proj_scales', which the index does not list");
  fs::copy_file(original_index, index, fs::copy_options::overwrite_existing);

  const std::string config = dir + "/config.json";
  const std::string original_config = path("config");
  fs::copy_file(config, original_config);
  edit_json(config, [](nlohmann::json& j) { j["intermediate_size"] = 64; });
  expect_refused(dir, "tensor 'model.layers.0.mlp.experts.gate_up_proj_blocks' is uint8 [5, 64, 3, 16], but the model config implies U8 [5, 128, 3, 16]");
  fs::copy_file(original_config, config, fs::copy_options::overwrite_existing);
  edit_json(config, [](nlohmann::json& j) { j["model_type"] = "llama"; });
  expect_refused(dir, "model_type \"llama\" is not supported");
  fs::copy_file(original_config, config, fs::copy_options::overwrite_existing);
  edit_json(config, [](nlohmann::json& j) { j.erase("num_local_experts"); });
  expect_refused(dir, "missing field 'num_local_experts'");
}

TEST_F(CliGptOss, BadPromptIdsAreRefused) {
  ShellResult r = run_cli("generate --model " + kPublished + " --prompt-ids 1,997 -n 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("token id 997 is outside the model's vocabulary [0, 997)"), std::string::npos) << r.output;
  r = run_cli("generate --model " + kPublished + " --prompt-ids 1,,2 -n 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("'' is not a token id"), std::string::npos) << r.output;
  std::vector<int32_t> long_prompt(128, 5);
  r = run_cli("generate --model " + kPublished + " --prompt-ids " + joined(long_prompt) + " -n 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("prompt is 128 tokens, but the model's context is 128"), std::string::npos) << r.output;
  r = run_cli("generate --model " + kPublished + " --prompt hi --prompt-ids 1 -n 2");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("not both"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace switchyard
