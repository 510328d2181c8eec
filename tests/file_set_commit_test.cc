// The checkpoint commit protocol: a set of files is replaced as a unit even when the process dies at
// any stage of the commit. Crashes are real: a child process commits and _exits at a chosen stage,
// and the parent recovers the directory and inspects it.
#include <gtest/gtest.h>

#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "expect_error.h"
#include "model/file_set_commit.h"
#include "temp_dir_test_base.h"

namespace switchyard {
namespace {

namespace fs = std::filesystem;
using model::FileSetCommit;

const std::vector<std::string> kNames = {"config.json", "model.safetensors", "training_state.safetensors"};

// File contents that name the set they belong to, of different lengths per set and file.
std::string content(const std::string& name, const std::string& tag) {
  std::string text;
  for (int i = 0; i < 1 + static_cast<int>(tag.size()) * 50; ++i) text += name + " of set " + tag + "\n";
  return text;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Writes the set `tag` through the protocol; `after_stage` may end the process.
void commit_set(const std::string& dir, const std::string& tag,
                std::function<void(const std::string&)> after_stage = nullptr) {
  FileSetCommit commit(dir);
  commit.after_stage = std::move(after_stage);
  for (const std::string& name : kNames) std::ofstream(commit.stage(name), std::ios::binary) << content(name, tag);
  commit.commit();
}

class FileSetCommitTest : public TempDirTest {
 protected:
  // Which complete set the directory holds: its tag, "none" (no file of the set), or "mixed".
  std::string current_set() const {
    std::string found;
    int missing = 0;
    for (const std::string& name : kNames) {
      if (!fs::exists(dir_ / name)) {
        ++missing;
        continue;
      }
      const std::string text = read_file(dir_ / name);
      if (text.size() < 9 || text.rfind(" of set ") == std::string::npos) return "mixed";
      std::string tag = text.substr(text.rfind(" of set ") + 8);
      tag.pop_back();  // the newline
      if (text != content(name, tag)) return "mixed";
      if (found.empty()) found = tag;
      if (found != tag) return "mixed";
    }
    if (missing == static_cast<int>(kNames.size())) return "none";
    return missing == 0 ? found : "mixed";
  }
  // Files other than the set and the lock file (staged files, records).
  std::vector<std::string> leftovers() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir_)) {
      const std::string name = entry.path().filename().string();
      if (name != model::kCommitLock && std::find(kNames.begin(), kNames.end(), name) == kNames.end()) {
        names.push_back(name);
      }
    }
    return names;
  }
  // Runs `work` in a child process and waits for it to end.
  static void in_child(const std::function<void()>& work) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      work();
      _exit(0);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
  }
  // The stages commit() reports, in order, found by committing into a scratch directory.
  std::vector<std::string> stages() const {
    std::vector<std::string> seen;
    commit_set((dir_ / "scratch").string(), "x", [&](const std::string& stage) { seen.push_back(stage); });
    fs::remove_all(dir_ / "scratch");
    return seen;
  }
};

TEST_F(FileSetCommitTest, CommitReplacesEveryFileAndLeavesNothingBehind) {
  commit_set(dir_.string(), "old");
  EXPECT_EQ(current_set(), "old");
  commit_set(dir_.string(), "new");
  EXPECT_EQ(current_set(), "new");
  EXPECT_TRUE(leftovers().empty()) << testing::PrintToString(leftovers());
}

TEST_F(FileSetCommitTest, ReportsEveryStageInOrder) {
  EXPECT_EQ(stages(), (std::vector<std::string>{"staged", "committed", "installed config.json",
                                                "installed model.safetensors",
                                                "installed training_state.safetensors", "finished"}));
}

// The process dies after each stage in turn, over an earlier set and over an empty directory:
// recovery then shows the earlier set (or nothing) before the commit point, the new set from it on.
TEST_F(FileSetCommitTest, ACrashAfterAnyStageLeavesTheOldOrTheNewSet) {
  const std::vector<std::string> all = stages();
  for (bool had_old_set : {true, false}) {
    for (size_t crash_at = 0; crash_at < all.size(); ++crash_at) {
      SCOPED_TRACE((had_old_set ? "over a set, crash after " : "into nothing, crash after ") + all[crash_at]);
      for (const auto& entry : fs::directory_iterator(dir_)) fs::remove_all(entry.path());
      if (had_old_set) commit_set(dir_.string(), "old");
      in_child([&] {
        commit_set(dir_.string(), "new", [&](const std::string& stage) {
          if (stage == all[crash_at]) _exit(0);
        });
        _exit(1);  // not reached: every stage ends the process
      });
      const bool committed = crash_at >= 1;  // "committed" is the second stage
      // Between the first and the last install the files are torn until recovery rolls them forward.
      if (all[crash_at] == "installed config.json") {
        EXPECT_EQ(current_set(), "mixed");
      }

      model::recover_file_set(dir_.string());
      EXPECT_EQ(current_set(), committed ? "new" : (had_old_set ? "old" : "none"));
      EXPECT_TRUE(leftovers().empty()) << testing::PrintToString(leftovers());
      model::recover_file_set(dir_.string());  // recovering again changes nothing
      EXPECT_EQ(current_set(), committed ? "new" : (had_old_set ? "old" : "none"));
    }
  }
}

// Death while the new files are still being written (before commit() is called at all).
TEST_F(FileSetCommitTest, ACrashWhileStagingLeavesTheOldSet) {
  commit_set(dir_.string(), "old");
  in_child([&] {
    FileSetCommit commit(dir_.string());
    std::ofstream(commit.stage(kNames[0])) << content(kNames[0], "new");
    std::ofstream(commit.stage(kNames[1])) << content(kNames[1], "new").substr(0, 10);  // half written
    _exit(0);
  });
  EXPECT_EQ(leftovers().size(), 2u);
  model::recover_file_set(dir_.string());
  EXPECT_EQ(current_set(), "old");
  EXPECT_TRUE(leftovers().empty());
}

// The next commit finishes an interrupted one first, so its own staging cannot be mistaken for it.
TEST_F(FileSetCommitTest, TheNextCommitRecoversFirst) {
  commit_set(dir_.string(), "old");
  in_child([&] {
    commit_set(dir_.string(), "new", [](const std::string& stage) {
      if (stage == "installed config.json") _exit(0);
    });
  });
  commit_set(dir_.string(), "newer");
  EXPECT_EQ(current_set(), "newer");
  EXPECT_TRUE(leftovers().empty());
}

TEST_F(FileSetCommitTest, AnAbandonedCommitDiscardsItsStagedFiles) {
  commit_set(dir_.string(), "old");
  {
    FileSetCommit commit(dir_.string());
    std::ofstream(commit.stage(kNames[0])) << "partial";
  }  // destroyed without commit(), as when writing a file throws
  EXPECT_EQ(current_set(), "old");
  EXPECT_TRUE(leftovers().empty());
}

TEST_F(FileSetCommitTest, RecoveryWritesNothingWhenNothingWasInterrupted) {
  commit_set(dir_.string(), "old");
  fs::remove(dir_ / model::kCommitLock);
  model::recover_file_set(dir_.string());
  EXPECT_FALSE(fs::exists(dir_ / model::kCommitLock));  // a read-only model directory stays untouched
  EXPECT_EQ(current_set(), "old");
  model::recover_file_set(path("does_not_exist"));
}

TEST_F(FileSetCommitTest, AForeignRecordIsReportedNotFollowed) {
  commit_set(dir_.string(), "old");
  std::ofstream(dir_ / model::kCommitRecord) << "something else\n";
  expect_error([&] { model::recover_file_set(dir_.string()); }, {model::kCommitRecord, "not a commit record"});
  std::ofstream(dir_ / model::kCommitRecord) << "switchyard file set 1\n../escape\nend\n";
  expect_error([&] { model::recover_file_set(dir_.string()); }, {"../escape"});
  EXPECT_EQ(current_set(), "old");
}

TEST_F(FileSetCommitTest, StageRefusesNamesOutsideTheDirectory) {
  FileSetCommit commit(dir_.string());
  expect_error([&] { commit.stage("../x"); }, {"../x"});
  expect_error([&] { commit.stage(model::kCommitRecord); }, {model::kCommitRecord});
  commit.stage("a");
  expect_error([&] { commit.stage("a"); }, {"twice"});
  expect_error([&] { commit.commit(); }, {"never written"});
}

// A reader that finds a commit in progress waits for it instead of deleting its staged files.
TEST_F(FileSetCommitTest, RecoveryWaitsForACommitInProgress) {
  commit_set(dir_.string(), "old");
  int go[2], ready[2];
  ASSERT_EQ(pipe(go), 0);
  ASSERT_EQ(pipe(ready), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    FileSetCommit commit(dir_.string());
    for (const std::string& name : kNames) std::ofstream(commit.stage(name)) << content(name, "new");
    char byte = 1;
    if (write(ready[1], &byte, 1) != 1 || read(go[0], &byte, 1) != 1) _exit(2);
    commit.commit();
    _exit(0);
  }
  char byte;
  ASSERT_EQ(read(ready[0], &byte, 1), 1);  // the child holds the lock with its files staged
  std::thread reader([&] { model::recover_file_set(dir_.string()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(leftovers().size(), kNames.size());  // still there: the reader waits on the lock
  ASSERT_EQ(write(go[1], &byte, 1), 1);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  reader.join();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(current_set(), "new");
  EXPECT_TRUE(leftovers().empty());
  for (int fd : {go[0], go[1], ready[0], ready[1]}) close(fd);
}

}  // namespace
}  // namespace switchyard
