// `mpirun -np 2 switchyard train`: the same losses and weights as one process on the same global
// batch, checkpoints that resume on another number of ranks, a killed rank that stops the other
// with its name, and ranks started with different settings refused. Skipped without Open MPI.
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli_process.h"
#include "model/safetensors.h"
#include "mpi_sanitizer_environment.h"
#include "shell_command.h"
#include "relative_error.h"
#include "temp_dir_test_base.h"

namespace switchyard {
namespace {

const std::string kMpirun = SWITCHYARD_MPIEXEC;
const std::string kCorpus = std::string(SWITCHYARD_SHARED_DATA) + "/tinyshakespeare.txt";

class DataParallelCli : public TempDirTest {
 protected:
  void SetUp() override {
    if (kMpirun.empty()) GTEST_SKIP() << "built without MPI";
    set_mpi_sanitizer_environment();
    TempDirTest::SetUp();
  }
  // `train` on `ranks` processes (1: no launcher) writing to `out`; constant learning rate, so
  // that a run continued with more --steps follows the same curve as one given them at once. In
  // fp32, where a rank's share of the batch gives the same sums as the whole batch in one process.
  std::string train_command(int ranks, const std::string& out, int steps, int batch = 4) {
    return launcher(ranks) + SWITCHYARD_CLI + " train --model tiny --dtype fp32 --data " + kCorpus + " --out " +
           out + " --batch " + std::to_string(batch) +
           " --seq 32 --min-lr-ratio 1 --log-every 1000 --steps " + std::to_string(steps) + " 2>&1";
  }
  std::string resume_command(int ranks, const std::string& out, int steps) {
    return launcher(ranks) + SWITCHYARD_CLI + " train --out " + out + " --resume --log-every 1000 --steps " +
           std::to_string(steps) + " 2>&1";
  }
  static std::string launcher(int ranks) {
    return ranks > 1 ? kMpirun + " --allow-run-as-root --oversubscribe -np " + std::to_string(ranks) + " " : "";
  }
};

std::vector<double> losses(const std::string& out) {
  std::vector<double> values;
  std::ifstream in(out + "/log.jsonl");
  for (std::string line; std::getline(in, line);) {
    const nlohmann::json record = nlohmann::json::parse(line);
    if (record.contains("loss")) values.push_back(record["loss"].get<double>());
  }
  return values;
}

std::vector<float> weights(const std::string& out) {
  model::SafetensorsFile file = model::SafetensorsFile::open(out + "/model.safetensors");
  std::vector<float> all;
  for (const model::TensorInfo& t : file.tensors()) {
    const std::vector<float> values = file.read_f32(t.name);
    all.insert(all.end(), values.begin(), values.end());
  }
  return all;
}

void expect_same_curve(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t s = 0; s < want.size(); ++s) {
    EXPECT_NEAR(got[s], want[s], 1e-6 * std::fabs(want[s])) << "step " << s + 1;
  }
}

TEST_F(DataParallelCli, TwoRanksTrainAsOneProcessOnTheWholeBatch) {
  const ShellResult alone = run_shell(train_command(1, path("alone"), 20));
  ASSERT_EQ(alone.exit_code, 0) << alone.output;
  const ShellResult ranks = run_shell(train_command(2, path("ranks"), 20));
  ASSERT_EQ(ranks.exit_code, 0) << ranks.output;
  EXPECT_NE(ranks.output.find("data-parallel over 2 ranks"), std::string::npos) << ranks.output;
  expect_same_curve(losses(path("ranks")), losses(path("alone")));
  ASSERT_EQ(losses(path("ranks")).size(), 20u);
  EXPECT_LT(relative_error(weights(path("ranks")), weights(path("alone"))), 1e-6);
}

TEST_F(DataParallelCli, ACheckpointOfTwoRanksResumesOnOneAndOnTwo) {
  ASSERT_EQ(run_shell(train_command(1, path("whole"), 16)).exit_code, 0);
  const std::vector<double> whole = losses(path("whole"));
  for (int resumed_on : {1, 2}) {
    const std::string out = path("split" + std::to_string(resumed_on));
    const ShellResult first = run_shell(train_command(2, out, 8));
    ASSERT_EQ(first.exit_code, 0) << first.output;
    const ShellResult second = run_shell(resume_command(resumed_on, out, 16));
    ASSERT_EQ(second.exit_code, 0) << second.output;
    expect_same_curve(losses(out), whole);
  }
}

// The pid of rank `rank` among the children of mpirun `launcher`.
pid_t rank_process(pid_t launcher, int rank) {
  const std::string wanted = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
  for (const auto& entry : fs::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string pid, comm, state;
    long ppid = 0;
    if (!(stat >> pid >> comm >> state >> ppid) || ppid != launcher) continue;
    const std::string environ = read_file(entry.path() / "environ");
    if (environ.find(wanted + '\0') != std::string::npos) return static_cast<pid_t>(std::stol(name));
  }
  return -1;
}

TEST_F(DataParallelCli, AKilledRankStopsTheOtherNamingItWithinThirtySeconds) {
  const std::string out = path("killed");
  Process run({kMpirun, "--allow-run-as-root", "--oversubscribe", "-np", "2", SWITCHYARD_CLI, "train",
               "--model", "tiny", "--data", kCorpus, "--out", out, "--batch", "4", "--seq", "32",
               "--steps", "1000000", "--checkpoint-every", "5", "--log-every", "1000000"},
              path("killed.txt"));
  ASSERT_TRUE(wait_for_lines(run, out + "/log.jsonl", 12)) << run.output();
  const pid_t victim = rank_process(run.pid(), 1);
  ASSERT_GT(victim, 0) << "no rank 1 among mpirun's children";
  const auto killed_at = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(victim, SIGKILL), 0);
  while (run.running() && std::chrono::steady_clock::now() - killed_at < std::chrono::seconds(60)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  ASSERT_FALSE(run.running()) << "still running a minute after rank 1 was killed";
  EXPECT_LT(seconds, 30.0);
  EXPECT_NE(run.wait(), 0);
  const std::string output = run.output();
  EXPECT_NE(output.find("rank 0: rank 1 (process " + std::to_string(victim)), std::string::npos) << output;
  EXPECT_NE(output.find("the last checkpoint continues the run"), std::string::npos) << output;

  // The last checkpoint continues the run, on one process.
  const ShellResult resumed = run_shell(resume_command(1, out, 30));
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(losses(out).size(), 30u);
}

// Under Slurm: srun starts the ranks (Open MPI joins them through PMIx). Runs where a Slurm
// controller answers on this machine; skipped elsewhere (CI has none).
TEST_F(DataParallelCli, SrunTasksTrainAsRanks) {
  if (run_shell("timeout 10 sinfo -h -o %t 2>/dev/null | grep -q idle").exit_code != 0) {
    GTEST_SKIP() << "no idle Slurm node here";
  }
  ASSERT_EQ(run_shell(train_command(1, path("alone"), 6)).exit_code, 0);
  const std::string command = "timeout 120 srun -n 2 --mpi=pmix " + train_command(1, path("srun"), 6);
  const ShellResult srun = run_shell(command);
  ASSERT_EQ(srun.exit_code, 0) << srun.output;
  EXPECT_NE(srun.output.find("data-parallel over 2 ranks"), std::string::npos) << srun.output;
  expect_same_curve(losses(path("srun")), losses(path("alone")));
}

TEST_F(DataParallelCli, RanksStartedDifferentlyAreRefusedNamingTheDifference) {
  const std::string common = std::string(SWITCHYARD_CLI) + " train --model tiny --data " + kCorpus +
                             " --out " + path("mixed") + " --seq 32 --steps 5";
  const ShellResult mixed = run_shell(kMpirun + " --allow-run-as-root --oversubscribe -np 1 " + common +
                                      " --batch 4 : -np 1 " + common + " --batch 8 2>&1");
  EXPECT_NE(mixed.exit_code, 0);
  EXPECT_NE(mixed.output.find("rank 1 has batch = 8 where rank 0 has 4"), std::string::npos) << mixed.output;

  const ShellResult uneven = run_shell(train_command(2, path("uneven"), 5, 3));
  EXPECT_NE(uneven.exit_code, 0);
  EXPECT_NE(uneven.output.find("--batch 3 does not split evenly over 2 ranks"), std::string::npos)
      << uneven.output;
}

}  // namespace
}  // namespace switchyard
