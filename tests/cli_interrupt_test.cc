// `switchyard train` stopped by signals and by kill -9 at random instants, then resumed from its
// --out alone: the final parameters, every line of log.jsonl and the loss plot equal those of the
// same run left alone. Also: what --resume may and may not change.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/file_set_commit.h"
#include "model/safetensors.h"
#include "cli_process.h"
#include "temp_dir_test_base.h"

namespace switchyard {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> split_words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

struct LogRecord {
  int step;
  bool validation;
  double loss;
};

// Every line of the log, which must parse.
std::vector<LogRecord> read_log(const fs::path& log) {
  std::vector<LogRecord> records;
  std::ifstream in(log);
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
    EXPECT_TRUE(record.is_object()) << log << " line " << number << ": " << line;
    if (!record.is_object()) continue;
    const bool validation = record.contains("val_loss");
    records.push_back({record["step"].get<int>(), validation, record[validation ? "val_loss" : "loss"].get<double>()});
  }
  return records;
}

// The step recorded in config.json and in training_state.safetensors: one commit writes both.
std::pair<int, int> checkpoint_steps(const fs::path& dir) {
  const nlohmann::json config = nlohmann::json::parse(read_file(dir / "config.json"));
  const auto state = model::SafetensorsFile::open((dir / "training_state.safetensors").string());
  return {config["switchyard"]["step"].get<int>(), std::stoi(state.metadata().at("step"))};
}

class CliInterrupt : public TempDirTest {
 protected:
  void SetUp() override {
    TempDirTest::SetUp();
    setenv("OMP_WAIT_POLICY", "passive", 0);  // the machine is shared; spinning threads slow all
    text_ = path("corpus.txt");
    std::ofstream out(text_);
    for (int i = 0; i < 400; ++i) out << "To be, or not to be, that is the question " << i % 17 << ".\n";
  }
  // A small model, and a validation every `eval_every` steps so that interruptions fall on and
  // between them. In fp32, whose kernels give the same sums whatever number of threads a busy
  // machine leaves them (oneDNN's bf16 products make no such promise).
  std::vector<std::string> train_args(const std::string& out, int steps, int checkpoint_every, int eval_every = 7) const {
    return {SWITCHYARD_CLI, "train", "--model", "tiny", "--dtype", "fp32", "--n-layer", "2", "--n-embd", "32", "--data", text_,
            "--out", out, "--batch", "2", "--seq", "32", "--steps", std::to_string(steps), "--warmup", "5",
            "--lr", "2e-3", "--eval-every", std::to_string(eval_every), "--eval-windows", "2",
            "--checkpoint-every", std::to_string(checkpoint_every), "--log-every", "1000"};
  }
  std::vector<std::string> resume_args(const std::string& out) const {
    return {SWITCHYARD_CLI, "train", "--out", out, "--resume"};
  }
  int run_to_end(const std::vector<std::string>& args) {
    Process p(args, path("run.txt"));
    const int status = p.wait();
    EXPECT_EQ(status, 0) << p.output();
    return status;
  }
  // The resumed run's log, parameters and loss plot against the uninterrupted run's.
  void expect_same_run(const std::string& got, const std::string& want, int steps, int eval_every) {
    const std::vector<LogRecord> a = read_log(fs::path(got) / "log.jsonl"), b = read_log(fs::path(want) / "log.jsonl");
    int next_step = 1;
    for (const LogRecord& r : a) {
      if (!r.validation) {
        EXPECT_EQ(r.step, next_step++) << "training lines run 1.." << steps << " once each";
      } else {
        EXPECT_EQ(r.step, next_step - 1) << "a validation follows its step";
        EXPECT_TRUE(r.step % eval_every == 0 || r.step == steps) << "validation at step " << r.step;
      }
    }
    EXPECT_EQ(next_step, steps + 1);
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].step, b[i].step) << "line " << i + 1;
      EXPECT_EQ(a[i].validation, b[i].validation) << "line " << i + 1;
      EXPECT_EQ(a[i].loss, b[i].loss) << "line " << i + 1 << " (step " << a[i].step << ")";
    }
    EXPECT_TRUE(read_file(fs::path(got) / "model.safetensors") == read_file(fs::path(want) / "model.safetensors"))
        << "final parameters differ";
    EXPECT_TRUE(read_file(fs::path(got) / "loss.svg") == read_file(fs::path(want) / "loss.svg")) << "loss plots differ";
  }

  std::string text_;
};

// Ctrl-C (SIGINT), later SIGTERM: each stops the run after the step in progress with a checkpoint,
// exits 130 or 143 and prints the command that continues it, which finishes the run exactly.
// A validation after every step: a stop skips the one due at its step, which the resumed run makes.
TEST_F(CliInterrupt, SignalsStopWithACheckpointAndResumeExactly) {
  const int steps = 400;
  ASSERT_EQ(run_to_end(train_args(path("full"), steps, 25, 1)), 0);

  const fs::path log = path("split/log.jsonl");
  int last_step = 0;
  for (auto [sig, status, name, wait_lines] : {std::tuple{SIGINT, 130, "SIGINT", 120}, std::tuple{SIGTERM, 143, "SIGTERM", 400}}) {
    SCOPED_TRACE(name);
    const std::vector<std::string> args =
        last_step == 0 ? train_args(path("split"), steps, 25, 1) : resume_args(path("split"));
    Process p(args, path("split.txt"));
    ASSERT_TRUE(wait_for_lines(p, log, wait_lines)) << "the run ended before it could be interrupted\n" << p.output();
    p.signal(sig);
    ASSERT_EQ(p.wait(), status) << p.output();

    // "stopped by SIGINT at step 61 of 400 with a checkpoint in DIR; continue with: PROGRAM train --out DIR --resume"
    const std::string output = p.output();
    const size_t at = output.find(std::string("stopped by ") + name + " at step ");
    ASSERT_NE(at, std::string::npos) << output;
    const std::string message = output.substr(at, output.find('\n', at) - at);
    EXPECT_EQ(output.find('\n', at), output.size() - 1) << "the message is the last line\n" << output;
    const int stopped_at = std::stoi(message.substr(message.find(" at step ") + 9));
    EXPECT_GT(stopped_at, last_step);
    EXPECT_NE(message.find(" of 400 "), std::string::npos) << message;
    EXPECT_EQ(message.substr(message.find("continue with: ") + 15),
              std::string(SWITCHYARD_CLI) + " train --out " + path("split") + " --resume");
    EXPECT_EQ(checkpoint_steps(path("split")), std::pair(stopped_at, stopped_at));
    EXPECT_EQ(read_log(log).back().step, stopped_at);  // the log reaches the checkpoint exactly
    last_step = stopped_at;
  }
  // The printed command, word for word, finishes the run.
  const std::string output = read_file(path("split.txt"));
  std::vector<std::string> command = split_words(output.substr(output.find("continue with: ") + 15));
  ASSERT_EQ(run_to_end(command), 0);
  expect_same_run(path("split"), path("full"), steps, 1);
}

// kill -9 at random instants (within steps, evaluations and checkpoint commits), resuming each
// time, until a run finishes: the same numbers as the run left alone.
TEST_F(CliInterrupt, KilledAtRandomInstantsResumesExactly) {
  const int steps = 150;
  ASSERT_EQ(run_to_end(train_args(path("full"), steps, 3)), 0);

  std::mt19937 rng(20240520);
  const fs::path dir = path("killed"), log = dir / "log.jsonl";
  int kills = 0, resumed = 0, status = -1;
  for (int attempt = 0; attempt < 60 && status != 0; ++attempt) {
    model::recover_file_set(dir.string());  // what --resume does first: a committed checkpoint counts
    const bool have_checkpoint = fs::exists(dir / "config.json");
    Process p(have_checkpoint ? resume_args(dir.string()) : train_args(dir.string(), steps, 3), path("killed.txt"));
    resumed += have_checkpoint;
    // Some kills land while the run starts, most after a few more lines, at a random microsecond.
    const int lines = log_lines(log);
    if (rng() % 4 != 0) wait_for_lines(p, log, lines + 1 + static_cast<int>(rng() % 20));
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 5000));
    if (p.running()) {
      p.signal(SIGKILL);
      ++kills;
    }
    status = p.wait();
    if (status != 0) {
      ASSERT_EQ(status, 128 + SIGKILL) << p.output();
      model::recover_file_set(dir.string());
      if (fs::exists(dir / "config.json")) {
        const auto [config_step, state_step] = checkpoint_steps(dir);
        EXPECT_EQ(config_step, state_step) << "a checkpoint of two different steps after kill " << kills;
      }
    }
  }
  ASSERT_EQ(status, 0) << "the run never finished";
  EXPECT_GE(kills, 4);
  EXPECT_GE(resumed, 3);
  expect_same_run(dir.string(), path("full"), steps, 7);
}

// Checkpoints by wall time alone: a run killed after a while has one to resume from.
TEST_F(CliInterrupt, CheckpointsByWallTime) {
  std::vector<std::string> args = train_args(path("timed"), 60, 0);
  args.insert(args.end(), {"--checkpoint-minutes", "0.00001"});  // 0.6 ms: after every step or so
  {
    Process p(args, path("timed.txt"));
    ASSERT_TRUE(wait_for_lines(p, path("timed/log.jsonl"), 20)) << p.output();
    p.signal(SIGKILL);
    p.wait();
  }
  model::recover_file_set(path("timed"));
  ASSERT_TRUE(fs::exists(path("timed/config.json")));
  EXPECT_GE(checkpoint_steps(path("timed")).first, 1);
  ASSERT_EQ(run_to_end(resume_args(path("timed"))), 0);
  int training_lines = 0;
  for (const LogRecord& r : read_log(path("timed/log.jsonl"))) training_lines += !r.validation;
  EXPECT_EQ(training_lines, 60);
}

// A second signal does not wait for the checkpoint: the process exits at once.
TEST_F(CliInterrupt, ASecondSignalExitsAtOnce) {
  Process p(train_args(path("twice"), 400, 0), path("twice.txt"));
  ASSERT_TRUE(wait_for_lines(p, path("twice/log.jsonl"), 20)) << p.output();
  // Both arrive together when the process continues: the first asks for a stop, the second ends it.
  p.signal(SIGSTOP);
  p.signal(SIGINT);
  p.signal(SIGTERM);
  p.signal(SIGCONT);
  const int status = p.wait();
  EXPECT_TRUE(status == 130 || status == 143) << status << "\n" << p.output();
  EXPECT_EQ(p.output().find("stopped by"), std::string::npos) << p.output();
  EXPECT_FALSE(fs::exists(path("twice/config.json")));  // no checkpoint was written (none was due)
}

TEST_F(CliInterrupt, ResumeMayLengthenTheRunButNotChangeItsShape) {
  ASSERT_EQ(run_to_end(train_args(path("r"), 20, 0)), 0);

  // More steps: the schedule is fitted to the new end, so the last step runs at the minimum rate.
  std::vector<std::string> longer = resume_args(path("r"));
  longer.insert(longer.end(), {"--steps", "30"});
  Process p(longer, path("longer.txt"));
  ASSERT_EQ(p.wait(), 0) << p.output();
  EXPECT_NE(p.output().find("extending the run from 20 to 30 steps: the learning-rate schedule now ends at step 30\n"),
            std::string::npos) << p.output();
  std::ifstream log(path("r/log.jsonl"));
  nlohmann::json last;
  for (std::string line; std::getline(log, line);) {
    nlohmann::json record = nlohmann::json::parse(line);
    if (record.contains("lr")) last = record;
  }
  EXPECT_EQ(last["step"], 30);
  EXPECT_FLOAT_EQ(last["lr"].get<float>(), 2e-3f * 0.1f);

  // Nothing more to do, but a run killed after its last checkpoint may lack its loss curve:
  // resuming draws it again.
  const std::string plot = read_file(path("r/loss.svg"));
  fs::remove(path("r/loss.svg"));
  Process done(resume_args(path("r")), path("done.txt"));
  EXPECT_EQ(done.wait(), 0);
  EXPECT_NE(done.output().find("is complete (step 30 of 30)"), std::string::npos) << done.output();
  EXPECT_EQ(read_file(path("r/loss.svg")), plot);

  // Another batch and sequence length: refused, both named in one message.
  std::vector<std::string> reshaped = resume_args(path("r"));
  reshaped.insert(reshaped.end(), {"--steps", "40", "--batch", "3", "--seq", "16", "--eval-every", "5"});
  Process refused(reshaped, path("refused.txt"));
  EXPECT_EQ(refused.wait(), 1);
  const std::string output = refused.output();
  const size_t batch = output.find("--batch 3 (the run has 2)"), seq = output.find("--seq 16 (the run has 32)");
  ASSERT_NE(batch, std::string::npos) << output;
  ASSERT_NE(seq, std::string::npos) << output;
  EXPECT_EQ(output.find('\n', batch), output.find('\n', seq)) << "one message names both:\n" << output;
  EXPECT_EQ(output.find("--steps 40"), std::string::npos) << "--steps and --eval-every may change\n" << output;
  EXPECT_EQ(output.find("--eval-every 5"), std::string::npos) << output;
  EXPECT_EQ(checkpoint_steps(path("r")), std::pair(30, 30));  // the checkpoint is untouched
}

// A checkpoint written before settings were recorded: resume needs the flags again, and says so.
TEST_F(CliInterrupt, OlderCheckpointsResumeWithTheirFlagsGiven) {
  ASSERT_EQ(run_to_end(train_args(path("old"), 10, 0)), 0);
  nlohmann::json config = nlohmann::json::parse(read_file(path("old/config.json")));
  config["switchyard"].erase("run");
  config["switchyard"].erase("step");
  std::ofstream(path("old/config.json")) << config.dump(2);

  Process bare(resume_args(path("old")), path("bare.txt"));
  EXPECT_EQ(bare.wait(), 1);
  EXPECT_NE(bare.output().find("does not record its run's settings"), std::string::npos) << bare.output();
  EXPECT_NE(bare.output().find("--data"), std::string::npos) << bare.output();

  // The schedule and shape it keeps in its training state are taken from there: only --data is needed.
  Process again({SWITCHYARD_CLI, "train", "--out", path("old"), "--resume", "--data", text_}, path("again.txt"));
  ASSERT_EQ(again.wait(), 0) << again.output();
  EXPECT_NE(again.output().find("is complete (step 10 of 10)"), std::string::npos) << again.output();

  std::vector<std::string> args = train_args(path("old"), 15, 0);
  args.push_back("--resume");
  Process given(args, path("given.txt"));
  ASSERT_EQ(given.wait(), 0) << given.output();
  EXPECT_NE(given.output().find("note: the checkpoint"), std::string::npos) << given.output();
  EXPECT_EQ(checkpoint_steps(path("old")), std::pair(15, 15));
  EXPECT_TRUE(nlohmann::json::parse(read_file(path("old/config.json")))["switchyard"].contains("run"));
}

}  // namespace
}  // namespace switchyard
