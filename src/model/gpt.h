// The GPT-2 model written once against the backend kernel set: forward, backward, AdamW and
// single-position decoding with a KV cache.
//
// Owns four parameter-sized allocations (parameters, gradients, AdamW m and v; the moments are only
// allocated on the first optimizer step), the activations of the largest batch seen so far, the
// backward pass's per-layer scratch (reused across layers), and the KV cache when generating.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"
#include "model/device_buffer.h"
#include "model/gpt_config.h"
#include "model/parameter_layout.h"

namespace switchyard::model {

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float epsilon = 1e-8f;
  float weight_decay = 0.1f;
};

class Gpt {
 public:
  Gpt(backend::Backend& backend, const GptConfig& config);

  const GptConfig& config() const { return config_; }
  const ParameterLayout& layout() const { return layout_; }
  backend::Backend& backend() const { return backend_; }

  // GPT-2's initialisation: weights normal(0, 0.02), residual projections (attn.c_proj, mlp.c_proj)
  // normal(0, 0.02 / sqrt(2 L)), biases 0, LayerNorm gains 1 and shifts 0. Deterministic per seed.
  void init_random(uint64_t seed);

  // Whole parameter vector in layout order (ParameterLayout offsets), to and from the host.
  std::vector<float> parameters_to_host() const;
  void parameters_from_host(const std::vector<float>& values);
  std::vector<float> gradients_to_host() const;
  // AdamW moments (zeros before the first step).
  std::vector<float> adam_m_to_host() const;
  std::vector<float> adam_v_to_host() const;
  void adam_state_from_host(const std::vector<float>& m, const std::vector<float>& v);

  // Forward pass over tokens[B*T] (host memory). With targets[B*T], computes the per-position losses
  // and returns their mean; without, returns NaN. Throws Error if B*T do not fit the model (T beyond
  // n_positions) or a token or target is outside the vocabulary.
  float forward(const int32_t* tokens, const int32_t* targets, int B, int T);
  // Logits [B,T,V] of the last forward pass, copied to the host (valid until backward()).
  std::vector<float> logits_to_host() const;
  // Per-position losses [B,T] of the last forward pass with targets.
  std::vector<float> losses_to_host() const;

  void zero_grad();
  // Adds the gradient of (mean loss of the last forward * loss_scale) to the gradients. The last
  // forward must have had targets. Use loss_scale = 1/accumulation_steps for gradient accumulation.
  void backward(float loss_scale = 1.0f);
  // L2 norm of all gradients.
  float gradient_norm() const;
  // One AdamW step (step is 1-based); gradients are multiplied by grad_scale first.
  void adamw_step(const AdamWConfig& adamw, float learning_rate, int step, float grad_scale = 1.0f);

  // ---- training steps whose loss and gradient norm stay on the device until the step ends ----
  // begin_step(), forward_backward() for each micro-batch, then finish_step(): nothing in between
  // copies back to the host, so a GPU never waits for it inside a step. The gradients, norm and
  // update are exactly those of zero_grad, forward, backward, gradient_norm and adamw_step with
  // clip_scale's grad_scale; the loss is the same up to the order in which it is summed.
  struct StepResult {
    float loss;       // mean over the step's micro-batches of their mean loss (loss_scale-weighted)
    float grad_norm;  // global L2 norm of the gradients, before clipping
  };
  void begin_step();
  // forward with targets then backward(loss_scale); adds loss_scale * the mean loss to the step's.
  void forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                        float loss_scale = 1.0f);
  // Global-norm clipping at `clip` (0: none) and one AdamW step; then reads the step's loss and
  // gradient norm back, the step's one wait for the device.
  StepResult finish_step(const AdamWConfig& adamw, float learning_rate, int step, float clip);

  // Prepares a KV cache for B sequences (any previous cache is dropped).
  void start_decoding(int B);
  // Feeds tokens[B] at position `pos` (0-based, < n_positions) and returns logits [B,V] for the next
  // position. Positions must be fed in order 0, 1, 2, ... after start_decoding.
  std::vector<float> decode(const int32_t* tokens, int pos);

 private:
  struct Activations;
  struct Scratch;
  void ensure_activations(int B, int T);
  // The forward pass up to the per-position losses (when there are targets), without reading back.
  void run_forward(const int32_t* tokens, const int32_t* targets, int B, int T);
  // AdamW over all parameters (weight decay on the matrices only); with grad_sum_of_squares
  // (device memory), clipped at `clip` on the device.
  void update_parameters(const AdamWConfig& adamw, float learning_rate, int step, float grad_scale,
                         const double* grad_sum_of_squares, float clip);
  void check_tokens(const int32_t* tokens, size_t count, const char* what) const;
  // An activation of this backend's activation dtype over model memory.
  Tensor act(const float* data, std::initializer_list<int64_t> shape) const;
  // The [rows, cols] matrix at parameter offset `offset` as the products read it: fp32, or its
  // copy in the backend's matmul weight dtype.
  Tensor weight(size_t offset, int64_t rows, int64_t cols) const;
  // Rewrites the weight copy from the fp32 parameters (after a load).
  void refresh_weight_copy();

  backend::Backend& backend_;
  GptConfig config_;
  ParameterLayout layout_;
  DeviceBuffer params_, grads_, adam_m_, adam_v_;
  // The parameters in Precision::matmul_weights, where that is not fp32 (bf16 devices).
  DeviceBuffer weight_copy_;
  // Two device doubles: the step's loss so far and the gradients' sum of squares.
  DeviceBuffer step_stats_;
  std::shared_ptr<Activations> acts_;
  std::shared_ptr<Scratch> scratch_;
  int last_B_ = 0, last_T_ = 0;
  bool last_has_targets_ = false;
  bool logits_valid_ = false;

  // Decoding state.
  int decode_B_ = 0;
  int decode_next_pos_ = 0;
  DeviceBuffer k_cache_, v_cache_, decode_acts_, decode_tokens_;
};

}  // namespace switchyard::model
