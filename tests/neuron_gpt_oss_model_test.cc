// gpt-oss on the NeuronCore simulators against the CPU backend: the parity suite's reference
// checkpoints trained and decoded over the paged cache (gpt_oss_device_parity.h), fp32 mode to
// fp32's bars and bf16 mode to bf16's, with every op run as a tile program: the simulation
// report names no op that ran on the host.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "backend/backend.h"
#include "gpt_oss_device_parity.h"

namespace switchyard {
namespace {

class NeuronGptOss : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    device_ = backend::create_backend(GetParam());
    cpu_ = backend::create_backend("cpu");
  }
  bool bf16() const { return device_->precision().activations == DType::kBF16; }
  // Ops the simulated clock did not see, as "name xCalls, ...".
  std::string host_ops() const {
    std::string text;
    const backend::SimulationReport report = *backend::simulation_report(*device_);
    for (const auto& [name, calls] : report.unsimulated_ops) {
      text += (text.empty() ? "" : ", ") + name + " x" + std::to_string(calls);
    }
    return text;
  }
  std::unique_ptr<Backend> device_, cpu_;
};

TEST_P(NeuronGptOss, ReferenceModelTrainsAndDecodesAsOnTheCpu) {
  check_reference_model_trains_and_decodes(*device_, *cpu_, bf16());
  EXPECT_EQ(host_ops(), "");
}

TEST_P(NeuronGptOss, PublishedMxfp4CheckpointRunsAsOnTheCpu) {
  check_published_mxfp4_checkpoint_runs(*device_, *cpu_, bf16());
  EXPECT_EQ(host_ops(), "");
}

INSTANTIATE_TEST_SUITE_P(Sim, NeuronGptOss,
                         ::testing::Values("trn1-sim-fp32", "trn2-sim-fp32", "trn1-sim", "trn2-sim"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) c = c == '-' ? '_' : c;
                           return name;
                         });

}  // namespace
}  // namespace switchyard
