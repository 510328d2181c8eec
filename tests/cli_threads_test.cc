// The CLI says how many threads it uses and why, how they wait, and that it uses fewer while other
// work keeps the CPUs busy; a user's own settings win and are named.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace switchyard {
namespace {

// Runs `switchyard devices` under `env_prefix` (an env(1) argument list) and returns the cpu row.
std::string cpu_row(const std::string& env_prefix) {
  const std::string command = "env -u OMP_WAIT_POLICY -u GOMP_SPINCOUNT -u OMP_NUM_THREADS "
                              "-u SWITCHYARD_OPENMP_CONFIGURED " +
                              env_prefix + " " + SWITCHYARD_CLI + " devices 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) return "popen failed";
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  const int status = pclose(pipe);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;
  const size_t begin = output.find("\ncpu ");
  if (begin == std::string::npos) return output;
  return output.substr(begin + 1, output.find('\n', begin + 1) - begin - 1);
}

TEST(CliThreads, SaysHowThreadsWaitAndThatTheyAdapt) {
  const std::string own = cpu_row("");
  EXPECT_NE(own.find("OpenMP default waiting"), std::string::npos) << own;
  EXPECT_NE(own.find("fewer while other work keeps the CPUs busy"), std::string::npos) << own;
  const std::string active = cpu_row("OMP_WAIT_POLICY=active");
  EXPECT_NE(active.find("active waiting"), std::string::npos) << active;
  const std::string spin = cpu_row("GOMP_SPINCOUNT=1000");
  EXPECT_NE(spin.find("spin count 1000 waiting"), std::string::npos) << spin;
}

TEST(CliThreads, SaysHowManyThreadsAndWhy) {
  const std::string row = cpu_row("OMP_NUM_THREADS=1");
  EXPECT_NE(row.find("1 OpenMP thread (OMP_NUM_THREADS=1;"), std::string::npos) << row;
  const std::string own = cpu_row("");
  EXPECT_TRUE(own.find("CPUs online") != std::string::npos ||
              own.find("affinity mask") != std::string::npos ||
              own.find("cgroup CPU quota") != std::string::npos)
      << own;
}

TEST(CliThreads, VerboseSaysHowTheProcessRunsBeforeOrAfterTheCommand) {
  for (const char* args : {"--verbose devices --json", "devices --json -v"}) {
    const std::string command = std::string("env OMP_NUM_THREADS=1 ") + SWITCHYARD_CLI + " " + args +
                                " 2>&1 >/dev/null";
    FILE* pipe = popen(command.c_str(), "r");
    ASSERT_NE(pipe, nullptr);
    std::string err;
    char buffer[4096];
    size_t n;
    while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) err.append(buffer, n);
    EXPECT_EQ(pclose(pipe), 0) << args;
    EXPECT_NE(err.find("1 OpenMP thread (OMP_NUM_THREADS=1;"), std::string::npos) << args << ": " << err;
  }
}

}  // namespace
}  // namespace switchyard
