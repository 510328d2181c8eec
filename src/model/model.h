// A language model written once against the backend's ops: the parts every family shares.
//
// A Model owns its parameters (in the form the backend computes with: parameter_storage.h) and
// their fp32 gradients, each laid out by the family's ParameterLayout, the AdamW moments
// (allocated on the first optimizer step), and the statistics of the training step in flight. A family (gpt2.h) adds its layers: it plans its
// activations and runs the forward and backward passes from shared blocks (model/blocks).
//
// Every forward pass takes a Batch: B training windows (with targets, for a loss and a backward
// pass), or chunks of sequences over a KvCache that the caller owns (prefill and decoding).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "backend/backend.h"
#include "core/tensor.h"
#include "model/batch.h"
#include "model/batch_on_device.h"
#include "model/blocks/block_context.h"
#include "model/device_buffer.h"
#include "model/frozen_weights.h"
#include "model/gradient_ledger.h"
#include "model/kv_cache.h"
#include "model/model_config.h"
#include "model/model_shape.h"
#include "model/parameter_layout.h"
#include "model/parameter_storage.h"
#include "model/step_sync.h"

namespace switchyard::model {

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float epsilon = 1e-8f;
  float weight_decay = 0.1f;
};

class Model {
 public:
  // The family named by config.family; throws Error for an unknown family.
  static std::unique_ptr<Model> create(backend::Backend& backend, const ModelConfig& config);
  // An inference-only model whose weights keep the dtypes they are stored in (frozen_weights.h):
  // no gradients, no optimizer, no training forward pass.
  static std::unique_ptr<Model> create_frozen(backend::Backend& backend, const ModelConfig& config,
                                              const WeightSource& weights);
  virtual ~Model() = default;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  const ModelShape& shape() const { return shape_; }
  const ParameterLayout& layout() const { return layout_; }
  backend::Backend& backend() const { return backend_; }
  // Inference-only, with weights as stored (create_frozen).
  bool frozen() const { return frozen_ != nullptr; }
  // Bytes the weights take in memory (the fp32 parameters, or the frozen weights as stored).
  int64_t weight_bytes() const;
  // Bytes of weights one decoded token reads, in the dtypes they are held in: every tensor but
  // one row of tables no product reads whole and the unchosen experts (ParameterTensor::read).
  double weight_bytes_read_per_token() const;

  // Fills every parameter by its layout's rule; deterministic per seed.
  void init_random(uint64_t seed);
  // Whole parameter vector in layout order, to and from the host.
  std::vector<float> parameters_to_host() const;
  void parameters_from_host(const std::vector<float>& values);
  std::vector<float> gradients_to_host() const;
  // AdamW moments, whole-layout vectors (zeros before the first step, and outside the ranges this
  // replica owns under a StepSync); setting them keeps only the owned ranges.
  std::vector<float> adam_m_to_host() const;
  std::vector<float> adam_v_to_host() const;
  void adam_state_from_host(const std::vector<float>& m, const std::vector<float>& v);
  // Bytes the AdamW moments take on the device (0 before they are allocated).
  size_t optimizer_state_bytes() const;

  // Joins this replica's training steps to others' (data parallelism); null trains alone again
  // (and drops the moments). Set it before the moments exist (the first update or
  // adam_state_from_host): they are allocated for its owned ranges only. The caller keeps `sync`
  // alive while it is set.
  void set_step_sync(StepSync* sync);
  // Device views of a range of the parameters inside one decay region (ParameterStorage::views:
  // fp32, or the high and low halves), and of the gradients (fp32), for the collectives.
  std::vector<Tensor> parameter_views(const FloatRange& range) const;
  Tensor gradient_range(const FloatRange& range) const;

  // ---- forward ----
  // Runs the model over `batch`, over `cache` when the batch was built on one (BatchBuilder).
  // With targets, computes every row's loss and returns their mean (NaN without). `for_training`
  // keeps what backward() reads (windows with targets only). Throws Error for tokens or targets
  // outside the vocabulary and positions beyond the context.
  float forward(const Batch& batch, KvCache* cache = nullptr, bool for_training = false);
  // Training windows: forward(Batch::windows(tokens, targets, B, T), nullptr, targets != null).
  float forward(const int32_t* tokens, const int32_t* targets, int B, int T);
  // Logits [rows that wanted them, V] of the last forward pass (valid until backward()).
  std::vector<float> logits_to_host() const;
  // Per-row losses [N] of the last forward pass with targets.
  std::vector<float> losses_to_host() const;
  // The family's auxiliary training loss of the last forward pass with targets, unweighted (gpt-oss:
  // the router's load-balancing loss, which training adds times config().router_aux_loss_coef);
  // 0 for families without one.
  virtual float auxiliary_loss() const { return 0.0f; }
  // A KvCache configuration for this model (a group per attention kind) with `blocks` blocks in
  // each group's pool.
  KvCacheConfig kv_cache_config(int blocks, int block_size = 16) const;

  // ---- training ----
  void zero_grad();
  // Adds the gradient of (mean loss of the last forward * loss_scale) to the gradients. The last
  // forward must have been for training. Use loss_scale = 1/accumulation_steps for accumulation.
  void backward(float loss_scale = 1.0f);
  float gradient_norm() const;
  // One AdamW step (step is 1-based); gradients are multiplied by grad_scale first.
  void adamw_step(const AdamWConfig& adamw, float learning_rate, int step, float grad_scale = 1.0f);

  // Training steps whose loss and gradient norm stay on the device until the step ends:
  // begin_step(), forward_backward() for each micro-batch, then finish_step(). The gradients, norm
  // and update are exactly those of zero_grad, forward, backward, gradient_norm and adamw_step
  // with clip_scale's grad_scale; the loss is the same up to the order it is summed in. Unlike
  // zero_grad, begin_step does not zero the gradients: the first micro-batch's backward pass sets
  // each one as it first writes it (GradientLedger), which saves a pass over all of them.
  struct StepResult {
    float loss;       // mean over the micro-batches of their mean loss (loss_scale-weighted)
    float grad_norm;  // global L2 norm of the gradients, before clipping
  };
  void begin_step();
  void forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                        float loss_scale = 1.0f);
  StepResult finish_step(const AdamWConfig& adamw, float learning_rate, int step, float clip);

 protected:
  // frozen: the weights of an inference-only model (create_frozen), else null.
  Model(backend::Backend& backend, const ModelConfig& config, ParameterLayout layout,
        const WeightSource* frozen);

  // The family's passes. forward_layers fills the head's logits (and losses with targets);
  // backward_layers adds the gradients of the last forward pass.
  virtual void forward_layers(const blocks::BlockContext& c, bool for_training) = 0;
  virtual void backward_layers(const blocks::BlockContext& c, float loss_scale) = 0;
  // The last forward pass's logits [R, V] and losses [N].
  virtual Tensor logits() const = 0;
  virtual Tensor losses() const = 0;

  // References to the parameter at `offset` with `shape` (value, gradient, matmul form).
  blocks::ParamRef param(size_t offset, std::initializer_list<int64_t> shape) const;
  blocks::BlockContext context(KvCache* cache) const;
  Tensor act(const void* data, std::initializer_list<int64_t> shape) const;
  // The last forward pass's batch on the device.
  const BatchOnDevice& batch() const { return batch_; }
  // Families call it as their backward pass finishes each layer's gradients (from the last down).
  void layer_gradients_done(int layer) const;

  ModelConfig config_;

 private:
  void check_batch(const Batch& batch) const;
  // Throws Error naming `what` for a frozen model.
  void require_trainable(const char* what) const;
  // Zeroes the gradients an open ledger still owes (begin_step's deferred zero_grad), before
  // anything reads them.
  void settle_gradients() const { unwritten_grads_.settle(); }
  void update_parameters(const AdamWConfig& adamw, float learning_rate, int step, float grad_scale,
                         const double* grad_sum_of_squares, float clip);
  void allocate_moments();
  // finish_step's statistics with a StepSync: the owned gradients' squares summed piece by piece,
  // then both statistics summed over the replicas; the total squares go back to the device.
  void synchronize_statistics(double* device_stats, double host_stats[2]);

  backend::Backend& backend_;
  ParameterLayout layout_;
  ModelShape shape_;
  std::optional<ParameterStorage> params_;  // absent in an inference-only model
  DeviceBuffer grads_;
  DeviceBuffer adam_m_, adam_v_;  // the owned ranges' moments, one after another
  StepSync* sync_ = nullptr;
  std::vector<FloatRange> owned_;  // what this replica updates: the whole layout without a sync
  DeviceBuffer owned_squares_;     // a double per owned range: its gradients' sum of squares
  DeviceBuffer step_stats_;   // two device doubles: the step's loss so far, the gradients' norm^2
  // Open from begin_step to the end of the step's first backward pass, in place of zero_grad:
  // the gradients each op writes first are set rather than zeroed and added to.
  mutable GradientLedger unwritten_grads_;
  std::unique_ptr<FrozenWeights> frozen_;      // inference-only weights, instead of params_
  std::unordered_map<size_t, size_t> frozen_index_;  // layout offset -> tensor index
  BatchOnDevice batch_;
  bool trained_forward_ = false;  // the last forward kept what backward reads
  bool logits_valid_ = false;
};

}  // namespace switchyard::model
