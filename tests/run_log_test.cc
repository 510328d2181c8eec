// log.jsonl: lines written one at a time, and cut back to a checkpoint's step on resume so that the
// resumed run's log continues the uninterrupted one line for line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "temp_dir_test_base.h"
#include "train/run_log.h"

namespace switchyard {
namespace {

namespace fs = std::filesystem;
using train::cut_log_back;
using train::LogCut;

std::string train_line(int step) {
  return nlohmann::json{{"step", step}, {"loss", 5.0 - step * 0.125}, {"ms", 1.5}}.dump() + "\n";
}
std::string val_line(int step) { return nlohmann::json{{"step", step}, {"val_loss", 4.0 - step * 0.0625}}.dump() + "\n"; }

// Training lines 1..steps with a validation line after every `eval_every`-th.
std::string log_text(int steps, int eval_every) {
  std::string text;
  for (int s = 1; s <= steps; ++s) {
    text += train_line(s);
    if (s % eval_every == 0) text += val_line(s);
  }
  return text;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class RunLogTest : public TempDirTest {
 protected:
  void write_log(const std::string& text) { std::ofstream(path("log.jsonl"), std::ios::binary) << text; }
  std::string log_file() const { return read_file(path("log.jsonl")); }
};

TEST_F(RunLogTest, WritesOneLinePerRecordAndAppendsOnResume) {
  {
    train::RunLog log(path("log.jsonl"), /*append=*/false);
    log.write(nlohmann::json::parse(train_line(1)));
    EXPECT_EQ(log_file(), train_line(1));  // on disk at once, not held in a buffer
    log.sync();
  }
  {
    train::RunLog log(path("log.jsonl"), /*append=*/true);
    log.write(nlohmann::json::parse(train_line(2)));
  }
  EXPECT_EQ(log_file(), train_line(1) + train_line(2));
  train::RunLog fresh(path("log.jsonl"), /*append=*/false);
  EXPECT_EQ(log_file(), "");
}

// A crash after step 10 (checkpoint at 8) mid-way through writing step 11.
TEST_F(RunLogTest, DropsEverythingAfterTheCheckpointAndAPartialLine) {
  write_log(log_text(10, 5) + train_line(11).substr(0, 12));
  const LogCut cut = cut_log_back(path("log.jsonl"), 8, /*keep_validation_at_step=*/false);
  EXPECT_EQ(log_file(), log_text(8, 5));
  EXPECT_EQ(cut.training_lines, 8);
  EXPECT_EQ(cut.last_training_step, 8);
  EXPECT_FALSE(cut.validation_at_step);
  EXPECT_EQ(cut.dropped_lines, 4);  // steps 9 and 10, the validation at 10, the partial line
}

// A validation line at the checkpoint's own step stays only where the uninterrupted run makes one.
TEST_F(RunLogTest, KeepsAValidationAtTheStepOnlyWhenAsked) {
  write_log(log_text(6, 5));
  LogCut cut = cut_log_back(path("log.jsonl"), 5, /*keep_validation_at_step=*/true);
  EXPECT_TRUE(cut.validation_at_step);
  EXPECT_EQ(log_file(), log_text(5, 5));
  cut = cut_log_back(path("log.jsonl"), 5, /*keep_validation_at_step=*/false);
  EXPECT_FALSE(cut.validation_at_step);
  EXPECT_EQ(cut.dropped_lines, 1);
  EXPECT_EQ(log_file(), log_text(5, 100));
}

// What an older version left: two objects glued on one line and the steps after a checkpoint
// logged twice (once before the kill, again by the resumed run).
TEST_F(RunLogTest, RepairsGluedLinesAndRepeatedSteps) {
  std::string text = log_text(4, 100);
  text.pop_back();  // step 4's line lost its newline: the resumed run's first line was glued to it
  text += train_line(3) + train_line(4) + train_line(5) + train_line(6);
  write_log(text);
  const LogCut cut = cut_log_back(path("log.jsonl"), 6, false);
  EXPECT_EQ(log_file(), log_text(6, 100));
  EXPECT_EQ(cut.training_lines, 6);
  EXPECT_EQ(cut.dropped_lines, 1);  // the glued line; its second half's step 3 was already kept
}

TEST_F(RunLogTest, LeavesAnIntactLogAndAMissingOneAlone) {
  write_log(log_text(6, 3));
  const auto written = fs::last_write_time(path("log.jsonl"));
  const LogCut cut = cut_log_back(path("log.jsonl"), 6, true);
  EXPECT_EQ(cut.dropped_lines, 0);
  EXPECT_TRUE(cut.validation_at_step);
  EXPECT_EQ(log_file(), log_text(6, 3));
  EXPECT_EQ(fs::last_write_time(path("log.jsonl")), written);
  EXPECT_EQ(cut_log_back(path("missing.jsonl"), 3, false).training_lines, 0);
  EXPECT_FALSE(fs::exists(path("missing.jsonl")));
}

}  // namespace
}  // namespace switchyard
