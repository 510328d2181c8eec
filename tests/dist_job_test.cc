// How a process learns the size of the job its launcher started, from the launcher's environment.
#include "dist/job.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

namespace switchyard::dist {
namespace {

// Clears every variable launched_ranks reads, sets `given`, and restores nothing: each test sets
// what it needs from a clean slate.
void launcher_environment(const std::vector<std::pair<std::string, std::string>>& given) {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "SLURM_STEP_ID",
                           "SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"}) {
    unsetenv(name);
  }
  for (const auto& [name, value] : given) setenv(name.c_str(), value.c_str(), 1);
}

TEST(LaunchedRanks, OneWithoutALauncher) {
  launcher_environment({});
  EXPECT_EQ(launched_ranks(), 1);
  EXPECT_NE(dynamic_cast<SingleRankCommunicator*>(join_job(Transport::kHostMemory).get()), nullptr);
}

TEST(LaunchedRanks, FromMpirunPmixAndPmi) {
  launcher_environment({{"OMPI_COMM_WORLD_SIZE", "4"}});
  EXPECT_EQ(launched_ranks(), 4);
  launcher_environment({{"PMIX_SIZE", "3"}});
  EXPECT_EQ(launched_ranks(), 3);
  launcher_environment({{"PMI_SIZE", "2"}});
  EXPECT_EQ(launched_ranks(), 2);
}

TEST(LaunchedRanks, FromASlurmStepOnly) {
  launcher_environment({{"SLURM_NTASKS", "8"}});  // a batch script, outside any srun step
  EXPECT_EQ(launched_ranks(), 1);
  launcher_environment({{"SLURM_NTASKS", "8"}, {"SLURM_STEP_ID", "0"}, {"SLURM_STEP_NUM_TASKS", "6"}});
  EXPECT_EQ(launched_ranks(), 6);
  launcher_environment({{"SLURM_NTASKS", "8"}, {"SLURM_STEP_ID", "0"}});
  EXPECT_EQ(launched_ranks(), 8);
}

TEST(LaunchedRanks, NonsenseCountsAreIgnored) {
  launcher_environment({{"OMPI_COMM_WORLD_SIZE", "two"}, {"PMI_SIZE", "-1"}});
  EXPECT_EQ(launched_ranks(), 1);
  launcher_environment({});
}

}  // namespace
}  // namespace switchyard::dist
