// The engine's PyTorch parity suite: a small random GPT-2 with odd sizes, run by every backend
// built in, against logits, loss, every gradient and 10 AdamW steps computed by PyTorch
// (tools/make_gpt2_reference.py wrote tests/data/gpt2_reference.safetensors).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/checkpoint.h"
#include "model/gpt.h"
#include "model/safetensors.h"

#include "relative_error.h"

namespace switchyard {
namespace {

const std::string kReference = std::string(SWITCHYARD_TEST_DATA) + "/gpt2_reference.safetensors";

struct Reference {
  model::SafetensorsFile file;
  model::ModelConfig config;
  int B, T;
  model::AdamWConfig adamw;
  float lr;
  int adamw_steps;

  explicit Reference(const std::string& path) : file(model::SafetensorsFile::open(path)) {
    auto meta = [&](const char* key) { return file.metadata().at(key); };
    config.num_layers = std::stoi(meta("n_layer"));
    config.num_heads = std::stoi(meta("n_head"));
    config.channels = std::stoi(meta("n_embd"));
    config.vocab_size = std::stoi(meta("vocab_size"));
    config.max_seq_len = std::stoi(meta("n_positions"));
    B = std::stoi(meta("batch"));
    T = std::stoi(meta("seq"));
    lr = std::stof(meta("lr"));
    adamw.beta1 = std::stof(meta("beta1"));
    adamw.beta2 = std::stof(meta("beta2"));
    adamw.epsilon = std::stof(meta("eps"));
    adamw.weight_decay = std::stof(meta("weight_decay"));
    adamw_steps = std::stoi(meta("adamw_steps"));
  }
  std::vector<int32_t> ints(const std::string& name) const {
    auto bytes = file.raw(name);
    std::vector<int32_t> values(bytes.size() / 4);
    std::memcpy(values.data(), bytes.data(), bytes.size());
    return values;
  }
};

// Tolerances per backend: the CPU backend is held to the engine's fp32 bar; the NeuronCore
// simulator in fp32 mode to 1e-4; in bf16 mode (bf16 activations and matmul operands, fp32 master
// weights) to what bf16 allows: loss within 1e-2, logits and gradients within 2e-2.
struct Tolerance {
  double logits = 1e-5, loss = 1e-5, grads = 1e-4, adamw_losses = 1e-5, params = 1e-5;
};

Tolerance tolerance_for(const std::string& backend) {
  if (backend.ends_with("-sim")) return {2e-2, 1e-2, 2e-2, 1e-2, 1e-2};
  // The CUDA backend's bars (issue 4): fp32 mode within 1e-4; bf16 mode within 2e-2, and the ten
  // AdamW losses within 1e-2.
  if (backend == "cuda") return {2e-2, 2e-2, 2e-2, 1e-2, 2e-2};
  if (backend == "cuda-fp32") return {1e-4, 1e-4, 1e-4, 1e-4, 1e-4};
  if (backend.ends_with("-sim-fp32")) return {1e-4, 1e-4, 1e-4, 1e-4, 1e-4};
  return {};
}

class Gpt2Parity : public ::testing::TestWithParam<std::string> {};

TEST_P(Gpt2Parity, MatchesPyTorch) {
  Reference ref(kReference);
  const Tolerance tol = tolerance_for(GetParam());
  auto backend = backend::create_backend(GetParam());
  model::Gpt gpt(*backend, ref.config);
  gpt.parameters_from_host(model::read_hf_tensors(gpt.layout(), ref.file, ""));
  std::vector<int32_t> inputs = ref.ints("inputs"), targets = ref.ints("targets");
  ASSERT_EQ(inputs.size(), size_t(ref.B * ref.T));

  float loss = gpt.forward(inputs.data(), targets.data(), ref.B, ref.T);
  double logits_error = relative_error(gpt.logits_to_host(), ref.file.read_f32("logits"));
  EXPECT_LT(logits_error, tol.logits);
  float want_loss = ref.file.read_f32("loss")[0];
  EXPECT_NEAR(loss, want_loss, tol.loss * std::abs(want_loss));

  gpt.zero_grad();
  gpt.backward();
  std::vector<float> grads = gpt.gradients_to_host();
  std::vector<float> want_grads = model::read_hf_tensors(gpt.layout(), ref.file, "grad.");
  double worst_grad_error = 0;
  for (const model::ParameterTensor& t : gpt.layout().tensors()) {
    std::vector<float> got(grads.begin() + t.offset, grads.begin() + t.offset + t.numel);
    std::vector<float> want(want_grads.begin() + t.offset, want_grads.begin() + t.offset + t.numel);
    double error = relative_error(got, want);
    worst_grad_error = std::max(worst_grad_error, error);
    EXPECT_LT(error, tol.grads) << "gradient of " << t.name;
  }

  // Ten AdamW steps on the same batch, starting again from the reference parameters.
  gpt.parameters_from_host(model::read_hf_tensors(gpt.layout(), ref.file, ""));
  std::vector<float> want_losses = ref.file.read_f32("adamw_losses");
  double worst_loss_error = 0;
  ASSERT_EQ(int(want_losses.size()), ref.adamw_steps);
  for (int step = 0; step < ref.adamw_steps; ++step) {
    float step_loss = gpt.forward(inputs.data(), targets.data(), ref.B, ref.T);
    EXPECT_NEAR(step_loss, want_losses[step], tol.adamw_losses * std::abs(want_losses[step]))
        << "AdamW step " << step;
    worst_loss_error = std::max(worst_loss_error, double(std::abs(step_loss - want_losses[step]) / std::abs(want_losses[step])));
    gpt.zero_grad();
    gpt.backward();
    gpt.adamw_step(ref.adamw, ref.lr, step + 1);
  }
  std::vector<float> want_params = model::read_hf_tensors(gpt.layout(), ref.file, "params_after_adamw.");
  double params_error = relative_error(gpt.parameters_to_host(), want_params);
  EXPECT_LT(params_error, tol.params);
  std::printf("%s relative errors: logits %.2e, loss %.2e, worst gradient %.2e, worst AdamW loss %.2e, "
              "parameters after AdamW %.2e\n",
              GetParam().c_str(), logits_error, std::abs(loss - want_loss) / std::abs(want_loss),
              worst_grad_error, worst_loss_error, params_error);
}

std::vector<std::string> runnable_backends() {
  std::vector<std::string> names;
  for (const backend::BackendInfo& info : backend::list_backends()) {
    if (info.available) names.push_back(info.name);
  }
  return names;
}

INSTANTIATE_TEST_SUITE_P(AllBackends, Gpt2Parity, ::testing::ValuesIn(runnable_backends()),
                         [](const auto& info) {
                           std::string name = info.param;  // test names allow only [A-Za-z0-9_]
                           std::replace(name.begin(), name.end(), '-', '_');
                           return name;
                         });

}  // namespace
}  // namespace switchyard
