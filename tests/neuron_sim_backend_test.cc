// The trn1-sim / trn2-sim backends as a whole: the GPT-2 step on the simulator against the CPU
// backend (fp32 mode within 1e-4, bf16 mode within bf16's reach), simulated time that is
// deterministic and adds up, traces, and errors for what a simulated core cannot do.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/rng.h"
#include "expect_error.h"
#include "relative_error.h"
#include "model/gpt.h"
#include "temp_dir_test_base.h"
#include "training_run.h"

namespace switchyard {
namespace {

using StepResult = TrainingRun;

// Big enough for several row tiles (B*T = 160 > 128) and a vocabulary of several chunks' edge.
model::ModelConfig small_config() {
  model::ModelConfig c;
  c.num_layers = 2;
  c.num_heads = 4;
  c.channels = 64;
  c.vocab_size = 300;
  c.max_seq_len = 48;
  return c;
}

// B*T = 160 tokens: several row tiles of 128.
StepResult run_step(const std::string& device) {
  TrainingPlan plan;
  plan.config = small_config();
  plan.B = 4;
  plan.T = 40;
  return run_training(device, plan);
}

TEST(NeuronSimBackend, Fp32ModeMatchesTheCpuBackend) {
  const StepResult cpu = run_step("cpu");
  const StepResult sim = run_step("trn2-sim-fp32");
  EXPECT_NEAR(sim.loss, cpu.loss, 1e-4 * std::abs(cpu.loss));
  EXPECT_LT(relative_error(sim.logits, cpu.logits), 1e-4);
  EXPECT_LT(relative_error(sim.grads, cpu.grads), 1e-4);
  ASSERT_EQ(sim.later_losses.size(), cpu.later_losses.size());
  for (size_t i = 0; i < cpu.later_losses.size(); ++i)
    EXPECT_NEAR(sim.later_losses[i], cpu.later_losses[i], 1e-4 * std::abs(cpu.later_losses[i]));
  EXPECT_LT(relative_error(sim.step_losses, cpu.step_losses), 1e-4);
  EXPECT_LT(relative_error(sim.step_norms, cpu.step_norms), 1e-4);
  EXPECT_LT(relative_error(sim.decode_logits, cpu.decode_logits), 1e-4);
}

TEST(NeuronSimBackend, Bf16ModeStaysWithinBf16OfTheCpuBackend) {
  const StepResult cpu = run_step("cpu");
  const StepResult sim = run_step("trn1-sim");
  EXPECT_NEAR(sim.loss, cpu.loss, 1e-2 * std::abs(cpu.loss));
  const double logits_error = relative_error(sim.logits, cpu.logits);
  EXPECT_LT(logits_error, 2e-2);
  EXPECT_GT(logits_error, 0.0);  // bf16 really is in use: the numbers are not the fp32 ones
  EXPECT_LT(relative_error(sim.grads, cpu.grads), 2e-2);
  for (size_t i = 0; i < cpu.later_losses.size(); ++i)
    EXPECT_NEAR(sim.later_losses[i], cpu.later_losses[i], 1e-2 * std::abs(cpu.later_losses[i]));
  EXPECT_LT(relative_error(sim.step_losses, cpu.step_losses), 1e-2);
  EXPECT_LT(relative_error(sim.step_norms, cpu.step_norms), 2e-2);
  EXPECT_LT(relative_error(sim.decode_logits, cpu.decode_logits), 2e-2);
}

TEST(NeuronSimBackend, SimulatedTimeIsDeterministicAndAccountsForEveryEngine) {
  auto backend = backend::create_backend("trn2-sim");
  ASSERT_TRUE(backend::simulation_report(*backend).has_value());
  EXPECT_DOUBLE_EQ(backend::simulation_report(*backend)->total_ns, 0.0);
  model::Gpt gpt(*backend, small_config());
  gpt.init_random(4);
  std::vector<int32_t> tokens(2 * 32, 7);
  // The first forward pass also zero-fills the activation buffers it allocates; time the next two.
  gpt.forward(tokens.data(), tokens.data(), 2, 32);
  std::vector<double> spans;
  for (int rep = 0; rep < 2; ++rep) {
    const double before = backend::simulation_report(*backend)->total_ns;
    gpt.forward(tokens.data(), tokens.data(), 2, 32);
    spans.push_back(backend::simulation_report(*backend)->total_ns - before);
  }
  EXPECT_GT(spans[0], 0.0);
  EXPECT_NEAR(spans[0], spans[1], 1e-9 * spans[0]);  // equal up to rounding of absolute times
  const backend::SimulationReport report = *backend::simulation_report(*backend);
  EXPECT_EQ(report.target, "trn2");
  EXPECT_EQ(report.cores_per_chip, 8);
  EXPECT_GT(report.matmul_flops, 0.0);
  EXPECT_GT(report.hbm_bytes, 0.0);
  for (const auto& engine : report.engines) {
    EXPECT_LE(engine.busy_ns, report.total_ns + 1e-6) << engine.name;
  }
  EXPECT_EQ(backend::simulation_report(*backend::create_backend("cpu")), std::nullopt);
}

class NeuronSimBackendFiles : public TempDirTest {};

TEST_F(NeuronSimBackendFiles, TraceHasEveryKernelOfAStep) {
  auto backend = backend::create_backend("trn1-sim");
  model::Gpt gpt(*backend, small_config());
  gpt.init_random(4);
  std::vector<int32_t> tokens(2 * 16, 5);
  backend::require_simulator(*backend, "a trace").start_trace();
  gpt.forward(tokens.data(), tokens.data(), 2, 16);
  gpt.zero_grad();
  gpt.backward();
  gpt.adamw_step(model::AdamWConfig{}, 1e-3f, 1);
  const std::string trace_path = path("step.json");
  backend::require_simulator(*backend, "a trace").finish_trace(trace_path);
  std::ifstream in(trace_path);
  const nlohmann::json trace = nlohmann::json::parse(in);
  std::string names;
  for (const auto& event : trace["traceEvents"]) {
    if (event.contains("name")) names += event["name"].get<std::string>() + " ";
  }
  for (const char* kernel : {"embedding_forward", "layernorm_forward", "linear_forward",
                             "attention_forward", "gelu_forward", "cross_entropy_forward",
                             "cross_entropy_backward", "linear_backward", "attention_backward",
                             "layernorm_backward", "embedding_backward", "adamw"}) {
    EXPECT_NE(names.find(kernel), std::string::npos) << kernel;
  }
}

TEST(NeuronSimBackend, ErrorsNameTheProblem) {
  auto backend = backend::create_backend("trn2-sim");
  const std::string too_big = error_of([&] { backend->allocate(size_t{13} << 30); });
  EXPECT_NE(too_big.find("HBM"), std::string::npos) << too_big;
  const std::string not_sim = error_of(
      [] { backend::require_simulator(*backend::create_backend("cpu"), "--trace").start_trace(); });
  EXPECT_NE(not_sim.find("not a simulator"), std::string::npos) << not_sim;
  const std::string unknown = error_of([] { backend::create_backend("trn3-sim"); });
  EXPECT_NE(unknown.find("trn2-sim"), std::string::npos) << unknown;
}

}  // namespace
}  // namespace switchyard
