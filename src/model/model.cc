#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/gradient_clipping.h"
#include "core/error.h"
#include "core/rng.h"
#include "model/gpt2.h"
#include "model/gpt_oss.h"

namespace switchyard::model {
namespace {

namespace ops = backend::ops;

// The two doubles of Model::step_stats_.
constexpr size_t kStepLoss = 0, kStepGradSumOfSquares = 1;

Tensor f32(const float* data, int64_t n) { return Tensor::dense(data, DType::kF32, {n}); }
Tensor f64(const double* data) { return Tensor::dense(data, DType::kF64, {1}); }
int64_t i64(size_t n) { return static_cast<int64_t>(n); }

}  // namespace

namespace {

std::unique_ptr<Model> create_family(backend::Backend& backend, const ModelConfig& config,
                                     const WeightSource* frozen) {
  if (config.family == "gpt2") return std::make_unique<Gpt2>(backend, config, frozen);
  if (config.family == "gpt_oss") return std::make_unique<GptOss>(backend, config, frozen);
  fail("unknown model family '{}' (this build knows: gpt2, gpt_oss)", config.family);
}

}  // namespace

std::unique_ptr<Model> Model::create(backend::Backend& backend, const ModelConfig& config) {
  return create_family(backend, config, nullptr);
}

std::unique_ptr<Model> Model::create_frozen(backend::Backend& backend, const ModelConfig& config,
                                            const WeightSource& weights) {
  return create_family(backend, config, &weights);
}

Model::Model(backend::Backend& backend, const ModelConfig& config, ParameterLayout layout,
             const WeightSource* frozen)
    : config_(config),
      backend_(backend),
      layout_(std::move(layout)),
      shape_(ModelShape::of(config)),
      batch_(backend) {
  if (frozen) {
    frozen_ = std::make_unique<FrozenWeights>(backend_, layout_, *frozen);
    for (size_t i = 0; i < layout_.tensors().size(); ++i) frozen_index_[layout_.tensors()[i].offset] = i;
    return;
  }
  params_.emplace(backend_, layout_);
  grads_ = DeviceBuffer(backend_, layout_.total());
  owned_ = {{0, layout_.decay_end(), true}, {layout_.decay_end(), layout_.total(), false}};
}

// ---- parameters ----

void Model::require_trainable(const char* what) const {
  require(!frozen_, "{}: this model is inference-only (its weights are kept as stored)", what);
}

int64_t Model::weight_bytes() const {
  return frozen_ ? frozen_->bytes() : static_cast<int64_t>(layout_.total() * sizeof(float));
}

double Model::weight_bytes_read_per_token() const {
  double total = 0;
  const std::vector<ParameterTensor>& tensors = layout_.tensors();
  for (size_t i = 0; i < tensors.size(); ++i) {
    const ParameterTensor& t = tensors[i];
    const DType dtype = frozen_ ? frozen_->tensor(i).dtype : params_->read_dtype(t.offset);
    double bytes = static_cast<double>(storage_bytes(dtype, static_cast<int64_t>(t.numel)));
    if (dtype == DType::kMXFP4) bytes += static_cast<double>(t.numel) / 32.0;  // the scales
    if (t.read == ReadPerToken::kOneRow) bytes /= static_cast<double>(t.shape[0]);
    if (t.read == ReadPerToken::kChosenExperts) {
      bytes *= static_cast<double>(config_.experts_per_token) / static_cast<double>(config_.num_experts);
    }
    total += bytes;
  }
  return total;
}

void Model::init_random(uint64_t seed) {
  require_trainable("random initialisation");
  std::vector<float> values(layout_.total(), 0.0f);
  Rng rng(seed);
  for (const ParameterTensor& t : layout_.tensors()) {
    float* p = values.data() + t.offset;
    if (t.init == Init::kOne) std::fill(p, p + t.numel, 1.0f);
    if (t.init == Init::kNormal) rng.fill_normal(p, t.numel, t.init_std);
  }
  parameters_from_host(values);
}

std::vector<float> Model::parameters_to_host() const {
  require_trainable("reading the parameters");
  return params_->to_host();
}

void Model::parameters_from_host(const std::vector<float>& values) {
  require_trainable("setting the parameters");
  params_->from_host(values);
}

std::vector<float> Model::gradients_to_host() const {
  require_trainable("reading the gradients");
  settle_gradients();
  std::vector<float> values(layout_.total());
  backend_.copy_to_host(values.data(), grads_.get(), values.size() * sizeof(float));
  return values;
}

namespace {

// Copies the owned ranges between a whole-layout vector and their packed form on the device.
void owned_to_host(backend::Backend& backend, const std::vector<FloatRange>& owned,
                   const float* packed, std::vector<float>& whole) {
  for (const FloatRange& r : owned) {
    backend.copy_to_host(whole.data() + r.begin, packed, r.size() * sizeof(float));
    packed += r.size();
  }
}

void owned_to_device(backend::Backend& backend, const std::vector<FloatRange>& owned,
                     const std::vector<float>& whole, float* packed) {
  for (const FloatRange& r : owned) {
    backend.copy_to_device(packed, whole.data() + r.begin, r.size() * sizeof(float));
    packed += r.size();
  }
}

size_t owned_floats(const std::vector<FloatRange>& owned) {
  size_t n = 0;
  for (const FloatRange& r : owned) n += r.size();
  return n;
}

}  // namespace

std::vector<float> Model::adam_m_to_host() const {
  std::vector<float> values(layout_.total(), 0.0f);
  if (adam_m_.get()) owned_to_host(backend_, owned_, adam_m_.get(), values);
  return values;
}

std::vector<float> Model::adam_v_to_host() const {
  std::vector<float> values(layout_.total(), 0.0f);
  if (adam_v_.get()) owned_to_host(backend_, owned_, adam_v_.get(), values);
  return values;
}

void Model::adam_state_from_host(const std::vector<float>& m, const std::vector<float>& v) {
  require_trainable("setting optimizer state");
  require(m.size() == layout_.total() && v.size() == layout_.total(),
          "optimizer state has {} and {} values, the model needs {}", m.size(), v.size(),
          layout_.total());
  allocate_moments();
  owned_to_device(backend_, owned_, m, adam_m_.get());
  owned_to_device(backend_, owned_, v, adam_v_.get());
}

void Model::allocate_moments() {
  if (adam_m_.get()) return;
  const size_t n = owned_floats(owned_);
  adam_m_ = DeviceBuffer(backend_, n);
  adam_v_ = DeviceBuffer(backend_, n);
  backend_.fill_zero(adam_m_.get(), n * sizeof(float));
  backend_.fill_zero(adam_v_.get(), n * sizeof(float));
}

size_t Model::optimizer_state_bytes() const {
  return adam_m_.get() ? 2 * owned_floats(owned_) * sizeof(float) : 0;
}

void Model::set_step_sync(StepSync* sync) {
  require_trainable("data-parallel training");
  if (!sync) {  // the owned ranges' moments are no use to a model on its own
    adam_m_ = DeviceBuffer();
    adam_v_ = DeviceBuffer();
  }
  require(!adam_m_.get(), "set_step_sync: the optimizer state already exists");
  sync_ = sync;
  owned_squares_ = DeviceBuffer();  // sized for the new owned ranges at the next step
  owned_ = sync ? sync->owned_ranges()
                : std::vector<FloatRange>{{0, layout_.decay_end(), true},
                                          {layout_.decay_end(), layout_.total(), false}};
  for (const FloatRange& r : owned_) {
    require(r.begin <= r.end && r.end <= layout_.total() &&
                (r.decay ? r.end <= layout_.decay_end() : r.begin >= layout_.decay_end()),
            "owned range [{}, {}) does not fit the layout", r.begin, r.end);
  }
}

std::vector<Tensor> Model::parameter_views(const FloatRange& range) const {
  require_trainable("a parameter range");
  return params_->views(range);
}

Tensor Model::gradient_range(const FloatRange& range) const {
  require_trainable("a gradient range");
  // Not settled here: replicas' reductions read ranges from their own thread while the backward
  // pass goes on, and layer_gradients_done has settled each layer before its ranges are reduced.
  return Tensor::dense(grads_.get() + range.begin, DType::kF32, {i64(range.size())});
}

blocks::ParamRef Model::param(size_t offset, std::initializer_list<int64_t> shape) const {
  blocks::ParamRef ref;
  if (frozen_) {
    // The tensor as stored, viewed with the shape asked for (q's offset with the packed q|k|v
    // shape covers k and v, which the frozen store keeps right after it).
    const Tensor& stored = frozen_->tensor(frozen_index_.at(offset));
    ref.value = Tensor::dense(stored.data, stored.dtype, shape);
    ref.value.scales = stored.scales;
    ref.weight = ref.value;
    ref.stamp = frozen_->stamp();
    return ref;
  }
  params_->view(offset, shape, ref);
  ref.grad = Tensor::dense(grads_.get() + offset, DType::kF32, shape);
  ref.stamp = params_->stamp();
  return ref;
}

blocks::BlockContext Model::context(KvCache* cache) const {
  GradientLedger* gradients = cache == nullptr && unwritten_grads_.is_open() ? &unwritten_grads_
                                                                             : nullptr;
  return {.backend = backend_, .activations = backend_.precision().activations, .batch = batch_,
          .cache = cache, .gradients = gradients};
}

Tensor Model::act(const void* data, std::initializer_list<int64_t> shape) const {
  return Tensor::dense(data, backend_.precision().activations, shape);
}

// ---- forward ----

void Model::check_batch(const Batch& batch) const {
  auto check = [&](const std::vector<int32_t>& ids, const char* what) {
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= config_.vocab_size) {
        fail("{} {} at position {} is outside the model's vocabulary [0, {})", what, ids[i], i,
             config_.vocab_size);
      }
    }
  };
  check(batch.tokens, "token");
  check(batch.targets, "target");
  for (const Batch::Sequence& s : batch.sequences) {
    require(s.context <= config_.max_seq_len,
            "sequence length {} does not fit the model (n_positions = {})", s.context,
            config_.max_seq_len);
  }
}

float Model::forward(const Batch& batch, KvCache* cache, bool for_training) {
  check_batch(batch);
  require(batch.over_cache() == (cache != nullptr),
          "a batch built over a KV cache runs with that cache, and only such a batch does");
  require(!for_training || (!batch.targets.empty() && cache == nullptr),
          "a training forward pass needs windows with targets");
  if (for_training) require_trainable("a training forward pass");
  batch_.upload(batch);
  forward_layers(context(cache), for_training);
  trained_forward_ = for_training;
  logits_valid_ = true;
  if (batch.targets.empty()) return std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> values = losses_to_host();
  double sum = 0;
  for (float value : values) sum += value;
  return static_cast<float>(sum / static_cast<double>(values.size()));
}

float Model::forward(const int32_t* tokens, const int32_t* targets, int B, int T) {
  return forward(Batch::windows(tokens, targets, B, T), nullptr, targets != nullptr && !frozen());
}

std::vector<float> Model::logits_to_host() const {
  require(logits_valid_, "no logits: run a forward pass first");
  return backend::to_host_f32(backend_, logits());
}

std::vector<float> Model::losses_to_host() const {
  require(!batch_.targets.empty(), "no losses: run a forward pass with targets first");
  const Tensor l = losses();
  std::vector<float> values(static_cast<size_t>(l.numel()));
  backend_.copy_to_host(values.data(), l.data, values.size() * sizeof(float));
  return values;
}

KvCacheConfig Model::kv_cache_config(int blocks, int block_size) const {
  KvCacheConfig c;
  c.kv_heads = config_.kv_heads();
  c.head_dim = config_.head_size();
  c.block_size = block_size;
  c.dtype = backend_.precision().activations;
  // One group per window size (full attention: window 0), so sliding layers hold only theirs.
  for (int l = 0; l < config_.num_layers; ++l) {
    const int window = config_.layer_window(l);
    auto group = std::find_if(c.groups.begin(), c.groups.end(),
                              [&](const KvCacheGroup& g) { return g.window == window; });
    if (group == c.groups.end()) {
      c.groups.push_back({.window = window, .layers = {}, .blocks = blocks});
      group = c.groups.end() - 1;
    }
    group->layers.push_back(l);
  }
  return c;
}

// ---- training ----

void Model::layer_gradients_done(int layer) const {
  if (!sync_) return;
  // The replicas reduce the layer's gradients from now on: what of them no op wrote (and the
  // alignment padding after each, which a bucket of several layers spans) must be zeros first.
  if (layer >= 0 && unwritten_grads_.is_open()) {
    const std::vector<ParameterTensor>& tensors = layout_.tensors();
    for (size_t i = 0; i < tensors.size();) {
      if (tensors[i].layer != layer) {
        ++i;
        continue;
      }
      size_t end = i + 1;  // a run of the layer's tensors, with no other tensor between
      while (end < tensors.size() && tensors[end].layer == layer) ++end;
      const size_t begin_float = tensors[i].offset;
      const size_t end_float = end < tensors.size() ? tensors[end].offset : layout_.total();
      unwritten_grads_.settle(begin_float * sizeof(float), (end_float - begin_float) * sizeof(float));
      i = end;
    }
  }
  sync_->layer_gradients_done(layer);
}

void Model::zero_grad() {
  require_trainable("zero_grad");
  unwritten_grads_.close();
  backend_.fill_zero(grads_.get(), layout_.total() * sizeof(float));
}

void Model::backward(float loss_scale) {
  require(trained_forward_ && logits_valid_,
          "backward needs a training forward pass (windows with targets) first");
  backward_layers(context(nullptr), loss_scale);
  settle_gradients();  // what no op wrote in a step begun without zero_grad
  layer_gradients_done(-1);
  logits_valid_ = false;  // the logits became their gradient
}

float Model::gradient_norm() const {
  require_trainable("gradient_norm");
  settle_gradients();
  DeviceBuffer total(backend_, sizeof(double) / sizeof(float));
  const double* sum = reinterpret_cast<const double*>(total.get());
  backend_.run(ops::SumOfSquares{.total = f64(sum), .x = f32(grads_.get(), i64(layout_.total()))});
  double host = 0;
  backend_.copy_to_host(&host, sum, sizeof(double));
  return backend::global_norm(host);
}

void Model::adamw_step(const AdamWConfig& adamw, float learning_rate, int step,
                       float grad_scale) {
  update_parameters(adamw, learning_rate, step, grad_scale, nullptr, 0.0f);
}

void Model::update_parameters(const AdamWConfig& adamw, float learning_rate, int step,
                              float grad_scale, const double* grad_sum_of_squares, float clip) {
  require_trainable("an optimizer step");
  require(step >= 1, "optimizer step must be >= 1, got {}", step);
  settle_gradients();
  allocate_moments();
  ops::AdamWStep update{.learning_rate = learning_rate, .beta1 = adamw.beta1,
                        .beta2 = adamw.beta2, .epsilon = adamw.epsilon, .step = step,
                        .grad_scale = grad_scale};
  size_t moments = 0;  // where the range's moments start in the packed buffers
  for (const FloatRange& r : owned_) {
    if (r.size() == 0) continue;
    update.weight_decay = r.decay ? adamw.weight_decay : 0.0f;
    const int64_t n = i64(r.size());
    ops::AdamW op{.grads = f32(grads_.get() + r.begin, n),
                  .m = f32(adam_m_.get() + moments, n), .v = f32(adam_v_.get() + moments, n),
                  .grad_sum_of_squares = grad_sum_of_squares ? f64(grad_sum_of_squares) : Tensor{},
                  .step = update, .clip = clip};
    params_->set_update_operands(r, op);
    backend_.run(op);
    moments += r.size();
  }
  params_->renew_stamp();
}

void Model::begin_step() {
  require_trainable("a training step");
  if (!step_stats_.get()) step_stats_ = DeviceBuffer(backend_, 2 * sizeof(double) / sizeof(float));
  // The zeroing waits for the backward pass: each gradient's first write sets it
  // (GradientLedger); with replicas, each layer's are settled before they are reduced
  // (layer_gradients_done).
  unwritten_grads_.open(backend_, grads_.get(), layout_.total() * sizeof(float));
  backend_.fill_zero(step_stats_.get(), 2 * sizeof(double));
}

void Model::forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                             float loss_scale) {
  require(step_stats_.get() != nullptr, "forward_backward needs begin_step first");
  require(targets != nullptr, "forward_backward needs targets");
  const Batch batch = Batch::windows(tokens, targets, B, T);
  check_batch(batch);
  batch_.upload(batch);
  forward_layers(context(nullptr), true);
  trained_forward_ = logits_valid_ = true;
  double* stats = reinterpret_cast<double*>(step_stats_.get());
  const int64_t N = static_cast<int64_t>(B) * T;
  backend_.run(ops::AccumulateSum{.total = f64(stats + kStepLoss), .x = losses(),
                                  .scale = static_cast<double>(loss_scale) / static_cast<double>(N)});
  backward(loss_scale);
}

Model::StepResult Model::finish_step(const AdamWConfig& adamw, float learning_rate, int step,
                                     float clip) {
  require(step_stats_.get() != nullptr, "finish_step needs begin_step first");
  settle_gradients();
  double* stats = reinterpret_cast<double*>(step_stats_.get());
  double host[2];
  if (sync_) {
    synchronize_statistics(stats, host);
  } else {
    backend_.run(ops::SumOfSquares{.total = f64(stats + kStepGradSumOfSquares),
                                   .x = f32(grads_.get(), i64(layout_.total()))});
  }
  update_parameters(adamw, learning_rate, step, 1.0f, stats + kStepGradSumOfSquares, clip);
  if (sync_) {
    sync_->parameters_updated();
    params_->refresh_copy();  // the ranges other replicas updated
    params_->renew_stamp();
  } else {
    backend_.copy_to_host(host, stats, sizeof(host));
  }
  return {static_cast<float>(host[kStepLoss]), backend::global_norm(host[kStepGradSumOfSquares])};
}

void Model::synchronize_statistics(double* device_stats, double host_stats[2]) {
  sync_->gradients_reduced();
  if (!owned_squares_.get()) {
    owned_squares_ = DeviceBuffer(backend_, owned_.size() * sizeof(double) / sizeof(float));
  }
  double* piece_squares = reinterpret_cast<double*>(owned_squares_.get());
  for (size_t i = 0; i < owned_.size(); ++i) {
    backend_.run(ops::SumOfSquares{.total = f64(piece_squares + i), .x = gradient_range(owned_[i])});
  }
  std::vector<double> host(owned_.size());
  backend_.copy_to_host(host.data(), piece_squares, host.size() * sizeof(double));
  backend_.copy_to_host(&host_stats[kStepLoss], device_stats + kStepLoss, sizeof(double));
  host_stats[kStepGradSumOfSquares] = 0;
  for (double value : host) host_stats[kStepGradSumOfSquares] += value;
  sync_->sum_statistics(Tensor::dense(host_stats, DType::kF64, {2}));
  backend_.copy_to_device(device_stats, host_stats, 2 * sizeof(double));
}

}  // namespace switchyard::model
