// End-to-end tests of the switchyard command: training with exact resume, evaluation, generation,
// and clear errors with a non-zero exit for bad input.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/token_shard.h"
#include "shell_command.h"
#include "temp_dir_test_base.h"

namespace switchyard {
namespace {

namespace fs = std::filesystem;

using Result = ShellResult;

Result run(const std::string& args) { return run_cli(args); }

nlohmann::json last_json_line(const std::string& output) {
  std::istringstream lines(output);
  std::string line, last;
  while (std::getline(lines, line)) {
    if (!line.empty() && line[0] == '{') last = line;
  }
  return nlohmann::json::parse(last);
}

std::vector<double> logged_losses(const fs::path& log) {
  std::vector<double> losses;
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    auto record = nlohmann::json::parse(line);
    if (record.contains("loss")) losses.push_back(record["loss"].get<double>());
  }
  return losses;
}

class Cli : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    text_ = path("corpus.txt");
    std::ofstream out(text_);
    for (int i = 0; i < 400; ++i) out << "To be, or not to be, that is the question " << i % 17 << ".\n";
  }
  std::string train_args(const std::string& out, int steps) const {
    // fp32: exact resumption relies on sums that do not depend on the thread count.
    return "train --model tiny --dtype fp32 --data " + text_ + " --out " + out + " --batch 2 --seq 32 --steps " +
           std::to_string(steps) + " --warmup 2 --lr 1e-3 --eval-windows 4";
  }

  std::string text_;
};

TEST_F(Cli, TrainingResumesExactlyWhereItStopped) {
  Result full = run(train_args(path("full"), 6));
  ASSERT_EQ(full.exit_code, 0) << full.output;
  EXPECT_NE(full.output.find("step 6/6"), std::string::npos) << full.output;
  EXPECT_TRUE(fs::exists(path("full/model.safetensors")));
  EXPECT_TRUE(fs::exists(path("full/training_state.safetensors")));
  EXPECT_TRUE(fs::exists(path("full/loss.svg")));
  std::vector<double> want = logged_losses(path("full/log.jsonl"));
  ASSERT_EQ(want.size(), 6u);

  // A tiny time limit stops after the first step with a checkpoint; --resume finishes the run (the
  // run's recorded time limit would stop it again, so the resume lifts it).
  Result first = run(train_args(path("split"), 6) + " --time-limit 0.000001");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("time limit"), std::string::npos) << first.output;
  EXPECT_NE(first.output.find("continue with: "), std::string::npos) << first.output;
  Result rest = run(train_args(path("split"), 6) + " --resume --time-limit 0");
  ASSERT_EQ(rest.exit_code, 0) << rest.output;
  std::vector<double> got = logged_losses(path("split/log.jsonl"));
  ASSERT_EQ(got.size(), 6u);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << "step " << i + 1;

  // Resuming with different settings is refused.
  Result changed = run("train --data " + text_ + " --out " + path("split") + " --batch 3 --seq 32 --steps 6 --resume");
  EXPECT_NE(changed.exit_code, 0);
  EXPECT_NE(changed.output.find("--batch"), std::string::npos) << changed.output;
}

TEST_F(Cli, EvalAndGenerateFromACheckpoint) {
  ASSERT_EQ(run(train_args(path("m"), 3)).exit_code, 0);
  Result eval = run("eval --model " + path("m") + " --data " + path("m/data/val.bin") + " --seq 16 --json");
  ASSERT_EQ(eval.exit_code, 0) << eval.output;
  nlohmann::json e = last_json_line(eval.output);
  double loss = e["loss"];
  EXPECT_NEAR(e["perplexity"].get<double>(), std::exp(loss), 1e-6 * std::exp(loss));
  size_t val_tokens = data::read_shard(path("m/data/val.bin")).size();
  EXPECT_EQ(e["tokens"].get<size_t>(), (val_tokens - 1) / 16 * 16);

  Result a = run("generate --model " + path("m") + " --prompt 'To be' -n 20 --seed 3");
  Result b = run("generate --model " + path("m") + " --prompt 'To be' -n 20 --seed 3");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_EQ(a.output.substr(0, 25), b.output.substr(0, 25));
  EXPECT_EQ(a.output.rfind("To be", 0), 0u);
  EXPECT_NE(a.output.find("tokens/s"), std::string::npos);
  EXPECT_EQ(a.output.find("untrained"), std::string::npos) << a.output;  // a checkpoint is no preset
}

TEST_F(Cli, BadInputGetsAClearErrorAndNonZeroExit) {
  struct Case {
    std::string args, expected;
  };
  // A shard whose tokens do not fit the byte vocabulary, and a truncated one.
  std::vector<int32_t> big = {1, 2, 300, 4, 5};
  data::write_shard(path("oov.bin"), big);
  std::vector<int32_t> ok(100, 7);
  data::write_shard(path("short.bin"), ok);
  fs::resize_file(path("short.bin"), fs::file_size(path("short.bin")) - 10);
  std::string long_prompt(300, 'x');

  std::vector<Case> cases = {
      {"", "no command given"},
      {"train --model gpt9 --data " + text_ + " --out " + path("x"), "unknown model preset 'gpt9'"},
      {"train --model tiny --device tpu7 --data " + text_ + " --out " + path("x"), "unknown device 'tpu7'"},
      {"train --model tiny --data " + text_ + " --out " + path("x") + " --frobnicate", "frobnicate"},
      {"train --model tiny --data " + text_ + " --out " + path("x") + " --batch zero", "batch"},
      {"train --model tiny --data " + path("missing.txt") + " --out " + path("x"), "missing.txt"},
      {"train --model tiny --data " + path("oov.bin") + " --out " + path("x"), "vocab"},
      {"train --model tiny --data " + text_ + " --out " + path("x") + " --seq 999", "context"},
      {"train --data " + text_ + " --out " + path("nothing") + " --resume", "no checkpoint"},
      {"eval --model tiny --data " + path("short.bin"), "truncated"},
      {"eval --model " + path("no_such_dir") + " --data " + path("oov.bin"), "no_such_dir"},
      {"generate --model tiny --prompt " + long_prompt, "prompt is 300 tokens"},
      {"generate --model tiny --prompt hi --top-p 1.5", "top-p"},
      {"bench train --model tiny --n-embd 130 --n-head 4", "divisible"},
  };
  for (const Case& c : cases) {
    Result r = run(c.args);
    EXPECT_NE(r.exit_code, 0) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expected), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_EQ(r.output.find("terminate called"), std::string::npos) << r.output;
  }
}

TEST_F(Cli, PresetShapesCanBeChangedByFlags) {
  Result r = run("train --model tiny --n-layer 1 --n-embd 48 --n-head 3 --n-positions 40 --data " + text_ +
                 " --out " + path("custom") + " --batch 2 --seq 40 --steps 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream config(path("custom/config.json"));
  nlohmann::json c = nlohmann::json::parse(config);
  EXPECT_EQ(c["n_layer"], 1);
  EXPECT_EQ(c["n_embd"], 48);
  EXPECT_EQ(c["n_head"], 3);
  EXPECT_EQ(c["n_positions"], 40);
  EXPECT_EQ(c["vocab_size"], 256);
}

TEST_F(Cli, DevicesListsTheCpu) {
  Result r = run("devices");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("cpu"), std::string::npos);
}

// --profile: a table of where the step went, and the same per kernel in the JSON, adding up to no
// more than the step.
TEST_F(Cli, BenchTrainProfileTimesEveryKernel) {
  Result r = run("bench train --model tiny --batch 2 --seq 16 --steps 2 --profile --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("all kernels"), std::string::npos) << r.output;
  nlohmann::json j = last_json_line(r.output);
  ASSERT_TRUE(j.contains("kernel_ms_per_step")) << r.output;
  double total = 0;
  for (const auto& [kernel, ms] : j["kernel_ms_per_step"].items()) total += ms.get<double>();
  for (const char* kernel : {"linear", "linear_backward", "adamw", "sum_of_squares", "attention",
                             "cross_entropy_backward"}) {
    EXPECT_GT(j["kernel_ms_per_step"].value(kernel, 0.0), 0) << kernel;
  }
  EXPECT_GT(total, 0);
  EXPECT_LE(total, 1.05 * j["ms_per_step"].get<double>());
}

// The bench lines say how many OpenMP threads the CPU backend ran with, and whether the adapter
// lowered them for other work: a fixed OMP_NUM_THREADS is a budget it leaves alone.
TEST_F(Cli, BenchReportsTheCpuThreads) {
  Result adapted = run("bench train --model tiny --batch 2 --seq 16 --steps 2 --json");
  ASSERT_EQ(adapted.exit_code, 0) << adapted.output;
  const nlohmann::json t = last_json_line(adapted.output)["cpu_threads"];
  ASSERT_TRUE(t.is_object()) << adapted.output;
  EXPECT_GE(t["budget"].get<int>(), 1);
  EXPECT_LE(t["reduced_samples"].get<int>(), t["samples"].get<int>());
  EXPECT_GE(t["fewest"].get<int>(), 1);
  EXPECT_LE(t["fewest"].get<int>(), t["budget"].get<int>());
  Result one = run_cli("bench generate --model tiny --dtype fp32 --tokens 2 --json", "OMP_NUM_THREADS=1 ");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  const nlohmann::json f = last_json_line(one.output)["cpu_threads"];
  EXPECT_EQ(f["budget"], 1);
  EXPECT_EQ(f["adapted"], false);
  EXPECT_EQ(f["reduced_samples"], 0);
}

TEST_F(Cli, BenchPrintsOneJsonObject) {
  Result r = run("bench train --model tiny --batch 2 --seq 16 --steps 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  nlohmann::json j = last_json_line(r.output);
  for (const char* key : {"ms_per_step", "tokens_per_s", "gflops", "peak_rss_mib"}) {
    EXPECT_TRUE(j.contains(key)) << key;
    EXPECT_GT(j[key].get<double>(), 0) << key;
  }
}

// bench generate at batch 1 keeps its line and fields; at --batch N a step decodes N tokens, and
// the figures say so: tokens/s is N per step, and the memory bound is N tokens per read of the
// weights.
TEST_F(Cli, BenchGenerateAtBatchOneAndBatchThree) {
  Result one = run("bench generate --model tiny --dtype fp32 --tokens 4 --json");
  ASSERT_EQ(one.exit_code, 0) << one.output;
  EXPECT_NE(one.output.find("generate tiny on cpu: batch 1, 4 tokens: "), std::string::npos) << one.output;
  EXPECT_NE(one.output.find(" ms/token, "), std::string::npos) << one.output;
  nlohmann::json j1 = last_json_line(one.output);
  EXPECT_EQ(j1["batch"], 1);
  EXPECT_EQ(j1["tokens"], 4);
  EXPECT_EQ(j1["ms_per_token"], j1["ms_per_step"]);
  EXPECT_NEAR(j1["tokens_per_s"].get<double>(), 1000 / j1["ms_per_token"].get<double>(),
              1e-9 * j1["tokens_per_s"].get<double>());
  for (const char* key : {"read_bandwidth_gbs", "weight_bytes", "bound_tokens_per_s", "fraction_of_bound",
                          "peak_rss_mib"}) {
    EXPECT_GT(j1[key].get<double>(), 0) << key;
  }

  Result three = run("bench generate --model tiny --dtype fp32 --batch 3 --tokens 4 --json");
  ASSERT_EQ(three.exit_code, 0) << three.output;
  EXPECT_NE(three.output.find("generate tiny on cpu: batch 3, 4 tokens each: "), std::string::npos) << three.output;
  EXPECT_NE(three.output.find(" ms/step, "), std::string::npos) << three.output;
  nlohmann::json j3 = last_json_line(three.output);
  EXPECT_EQ(j3["batch"], 3);
  EXPECT_FALSE(j3.contains("ms_per_token")) << j3;  // a step is not a token
  const double ms = j3["ms_per_step"].get<double>();
  ASSERT_GT(ms, 0);
  EXPECT_NEAR(j3["tokens_per_s"].get<double>(), 3 * 1000 / ms, 1e-9 * j3["tokens_per_s"].get<double>());
  const double bound = 3 * j3["read_bandwidth_gbs"].get<double>() * 1e9 / j3["weight_bytes"].get<double>();
  EXPECT_NEAR(j3["bound_tokens_per_s"].get<double>(), bound, 1e-9 * bound);
  EXPECT_EQ(j3["weight_bytes"], j1["weight_bytes"]);
}

TEST_F(Cli, BenchGenerateRefusesABadBatch) {
  for (const char* batch : {"0", "-2", "4097", "two"}) {
    Result r = run(std::string("bench generate --model tiny --tokens 2 --batch ") + batch);
    EXPECT_EQ(r.exit_code, 2) << batch << ": " << r.output;
    EXPECT_EQ(r.output.rfind("error: ", 0), 0u) << batch << ": " << r.output;
    EXPECT_NE(r.output.find("--batch"), std::string::npos) << batch << ": " << r.output;
  }
  // 4096 sequences of 65,536 positions: 256 GiB of keys for each layer, more than any host here.
  Result r = run("bench generate --model tiny --dtype fp32 --n-embd 256 --n-positions 65536 --context 65536 --tokens 2 "
                 "--batch 4096");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("error: --batch 4096: the KV cache of 4096 sequences of 65536 positions (2048.00 GiB) "
                          "does not fit on cpu: out of host memory"),
            std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace switchyard
