// A short training run through the model on any backend, recorded for comparing backends: one
// forward and backward pass (loss, logits, every gradient), further AdamW steps on the same batch
// (their losses), then decoding of a few positions one token at a time (their logits).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"
#include "model/generator.h"
#include "model/gpt2.h"
#include "random_data.h"

namespace switchyard {

struct TrainingRun {
  float loss = 0;
  std::vector<float> logits, grads, later_losses, decode_logits;
  // Steps through Model::begin_step .. finish_step (two micro-batches each, clipped): their losses
  // and gradient norms, worked out on the device.
  std::vector<float> step_losses, step_norms;
};

struct TrainingPlan {
  model::ModelConfig config;
  int B = 2, T = 16;
  int adamw_steps = 3;  // the first uses the recorded gradients; each later one records a loss
  int device_steps = 2;  // then whole steps with the statistics kept on the device
  float clip = 0.5f;
  float weight_decay = 0.1f;
  int decode_positions = 5;
  uint64_t init_seed = 21, data_seed = 3;
};

inline TrainingRun run_training(const std::string& device, const TrainingPlan& plan) {
  auto backend = backend::create_backend(device);
  model::Gpt2 gpt(*backend, plan.config);
  gpt.init_random(plan.init_seed);
  const size_t n = static_cast<size_t>(plan.B) * plan.T;
  const std::vector<int32_t> inputs = random_tokens(n, plan.config.vocab_size, plan.data_seed),
                             targets = random_tokens(n, plan.config.vocab_size, plan.data_seed + 1);
  TrainingRun r;
  r.loss = gpt.forward(inputs.data(), targets.data(), plan.B, plan.T);
  r.logits = gpt.logits_to_host();
  gpt.zero_grad();
  gpt.backward();
  r.grads = gpt.gradients_to_host();
  model::AdamWConfig adamw;
  adamw.weight_decay = plan.weight_decay;
  for (int step = 1; step <= plan.adamw_steps; ++step) {
    if (step > 1) {
      r.later_losses.push_back(gpt.forward(inputs.data(), targets.data(), plan.B, plan.T));
      gpt.zero_grad();
      gpt.backward();
    }
    gpt.adamw_step(adamw, 1e-3f, step, 1.0f / std::max(1.0f, gpt.gradient_norm()));
  }
  for (int step = 1; step <= plan.device_steps; ++step) {
    gpt.begin_step();
    const int half = plan.B / 2;  // B >= 2: two micro-batches of B / 2 sequences each
    for (int micro = 0; micro < 2; ++micro) {
      const size_t at = static_cast<size_t>(micro) * half * plan.T;
      gpt.forward_backward(inputs.data() + at, targets.data() + at, half, plan.T, 0.5f);
    }
    const model::Model::StepResult result =
        gpt.finish_step(adamw, 1e-3f, plan.adamw_steps + step, plan.clip);
    r.step_losses.push_back(result.loss);
    r.step_norms.push_back(result.grad_norm);
  }
  // One token at a time through the paged KV cache.
  model::Generator generator(gpt, 1, plan.decode_positions);
  const model::SequenceId sequence = generator.cache().add_sequence();
  for (int pos = 0; pos < plan.decode_positions; ++pos) {
    const std::vector<float> logits =
        generator.run({{.sequence = sequence, .tokens = {inputs[pos]}}}).front();
    r.decode_logits.insert(r.decode_logits.end(), logits.begin(), logits.end());
  }
  return r;
}

}  // namespace switchyard
