// scripts/quickstart_steps.sh: how many steps the quick start trains for, from a measured step time
// and a time budget, so that the learning-rate schedule completes within the budget.
#include <gtest/gtest.h>

#include <sstream>
#include <string>

#include "shell_command.h"

namespace {

using switchyard::run_shell;
using switchyard::ShellResult;

struct Plan {
  int exit_code = -1;
  long steps = 0, warmup = 0, eval_every = 0;
};

Plan plan(const std::string& ms_per_step, const std::string& seconds) {
  const std::string command = std::string("bash ") + SWITCHYARD_TEST_DATA + "/../../scripts/quickstart_steps.sh '" +
                              ms_per_step + "' '" + seconds + "' 2>/dev/null";
  const ShellResult run = run_shell(command);
  const std::string& output = run.output;
  Plan p;
  p.exit_code = run.exit_code;
  std::istringstream(output) >> p.steps >> p.warmup >> p.eval_every;
  return p;
}

TEST(QuickstartSteps, FillsNinetyPercentOfTheBudget) {
  // 0.9 * 300 s / 150 ms = 1800 steps; warmup 5%; six evaluations.
  Plan p = plan("150", "300");
  ASSERT_EQ(p.exit_code, 0);
  EXPECT_EQ(p.steps, 1800);
  EXPECT_EQ(p.warmup, 90);
  EXPECT_EQ(p.eval_every, 300);

  // The JSON of `bench train` prints the step time with decimals (and may use an exponent).
  p = plan("153.214619", "300");
  EXPECT_EQ(p.steps, 1762);  // floor(270000 / 153.214619)
  EXPECT_EQ(p.warmup, 88);
  EXPECT_EQ(plan("1.5e2", "300").steps, 1800);
  EXPECT_EQ(plan("150", "60").steps, 360);
}

TEST(QuickstartSteps, StaysWithinItsBounds) {
  // A fast machine: capped at 4000 steps.
  Plan fast = plan("20", "300");
  EXPECT_EQ(fast.steps, 4000);
  EXPECT_EQ(fast.warmup, 200);
  // A very slow one: at least 100 steps (taking longer than the budget), warmup at least 10.
  Plan slow = plan("5000", "300");
  EXPECT_EQ(slow.steps, 100);
  EXPECT_EQ(slow.warmup, 10);
  EXPECT_EQ(slow.eval_every, 16);
}

TEST(QuickstartSteps, RefusesWhatIsNotAPositiveNumber) {
  for (auto [ms, seconds] : {std::pair{"0", "300"}, {"-5", "300"}, {"fast", "300"}, {"", "300"}, {"150", "0"},
                             {"150", "five"}}) {
    EXPECT_EQ(plan(ms, seconds).exit_code, 2) << "'" << ms << "' '" << seconds << "'";
  }
}

}  // namespace
