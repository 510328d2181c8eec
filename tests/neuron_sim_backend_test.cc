// The trn1-sim / trn2-sim backends as a whole: the GPT-2 step on the simulator against the CPU
// backend (fp32 mode within about 10x its measured error, bf16 mode within bf16's reach, with a
// check that bf16 is really in use), simulated time that is deterministic and adds up, traces,
// and errors for what a simulated core cannot do.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "core/dtype.h"
#include "core/rng.h"
#include "expect_error.h"
#include "relative_error.h"
#include "model/gpt2.h"
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

// Every comparison of a simulator run with the CPU backend's, as relative errors (the losses as
// |got - want| / |want|, worst over the steps).
struct Errors {
  double loss, logits, grads, later_losses, step_losses, step_norms, decode_logits;
};

double worst_relative(const std::vector<float>& got, const std::vector<float>& want) {
  EXPECT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t i = 0; i < got.size() && i < want.size(); ++i)
    worst = std::max(worst, std::abs(double(got[i]) - want[i]) / std::abs(double(want[i])));
  return worst;
}

Errors compare(const StepResult& sim, const StepResult& cpu, const char* what) {
  const Errors e{std::abs(double(sim.loss) - cpu.loss) / std::abs(double(cpu.loss)),
                 relative_error(sim.logits, cpu.logits),
                 relative_error(sim.grads, cpu.grads),
                 worst_relative(sim.later_losses, cpu.later_losses),
                 relative_error(sim.step_losses, cpu.step_losses),
                 relative_error(sim.step_norms, cpu.step_norms),
                 relative_error(sim.decode_logits, cpu.decode_logits)};
  std::printf("%s vs cpu: loss %.2e, logits %.2e, gradients %.2e, AdamW losses %.2e, step losses "
              "%.2e, step norms %.2e, decode logits %.2e\n",
              what, e.loss, e.logits, e.grads, e.later_losses, e.step_losses, e.step_norms,
              e.decode_logits);
  return e;
}

// Bounds are about 10x the errors measured on 2026-12-04 on the development VM (given beside
// each). The simulator's arithmetic is the same on any host; the CPU backend's summation order
// may not be (oneDNN picks its kernels for the CPU), which the margin covers.
TEST(NeuronSimBackend, Fp32ModeMatchesTheCpuBackend) {
  const Errors e = compare(run_step("trn2-sim-fp32"), run_step("cpu"), "trn2-sim-fp32");
  EXPECT_LT(e.loss, 1e-6);           // measured 8.3e-8 (one ulp)
  EXPECT_LT(e.logits, 3e-6);         // 2.6e-7
  EXPECT_LT(e.grads, 4e-6);          // 3.3e-7
  EXPECT_LT(e.later_losses, 1e-6);   // 0
  EXPECT_LT(e.step_losses, 1e-6);    // 0
  EXPECT_LT(e.step_norms, 3e-6);     // 2.1e-7
  EXPECT_LT(e.decode_logits, 6e-6);  // 6.0e-7
}

// Whether v is a bf16 value: its low 16 bits are zero.
bool is_bf16(float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  return (bits & 0xffffu) == 0;
}

size_t count_bf16(const std::vector<float>& values) {
  return static_cast<size_t>(std::count_if(values.begin(), values.end(), is_bf16));
}

TEST(NeuronSimBackend, Bf16ModeStaysWithinBf16OfTheCpuBackend) {
  const StepResult cpu = run_step("cpu");
  const StepResult sim = run_step("trn1-sim");
  const Errors e = compare(sim, cpu, "trn1-sim");
  EXPECT_LT(e.loss, 2e-4);           // measured 1.8e-5
  EXPECT_LT(e.logits, 2e-2);         // 5.7e-3 (the bar bf16 was built to: 10x would be looser)
  EXPECT_LT(e.grads, 2e-2);          // 6.2e-3 (likewise)
  EXPECT_LT(e.later_losses, 1.5e-3); // 1.4e-4
  EXPECT_LT(e.step_losses, 3e-3);    // 2.8e-4
  EXPECT_LT(e.step_norms, 2e-2);     // 2.7e-3 (7x: the bar bf16 was built to)
  EXPECT_LT(e.decode_logits, 2e-2);  // 9.8e-3 (likewise)
  // bf16 really is in use: logits are activations, stored in bf16, so every one is a bf16 value
  // (an fp32 run gives almost none), and they differ from the fp32 logits by at least what
  // rounding those to bf16 alone would (the rest is bf16's error upstream).
  EXPECT_EQ(count_bf16(sim.logits), sim.logits.size());
  EXPECT_EQ(count_bf16(sim.decode_logits), sim.decode_logits.size());
  EXPECT_LT(count_bf16(cpu.logits), cpu.logits.size() / 100);
  std::vector<float> cpu_rounded(cpu.logits.size());
  for (size_t i = 0; i < cpu.logits.size(); ++i)
    cpu_rounded[i] = bf16_to_float(float_to_bf16(cpu.logits[i]));
  const double rounding_alone = relative_error(cpu_rounded, cpu.logits);
  std::printf("rounding the cpu logits to bf16: relative error %.2e\n", rounding_alone);
  EXPECT_GT(e.logits, rounding_alone);
}

TEST(NeuronSimBackend, SimulatedTimeIsDeterministicAndAccountsForEveryEngine) {
  auto backend = backend::create_backend("trn2-sim");
  ASSERT_TRUE(backend::simulation_report(*backend).has_value());
  EXPECT_DOUBLE_EQ(backend::simulation_report(*backend)->total_ns, 0.0);
  model::Gpt2 gpt(*backend, small_config());
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
  model::Gpt2 gpt(*backend, small_config());
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
