#include "model/gpt.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "backend/gradient_clipping.h"
#include "core/error.h"
#include "core/rng.h"

namespace switchyard::model {

namespace {

// The two doubles of Gpt::step_stats_.
constexpr size_t kStepLoss = 0, kStepGradSumOfSquares = 1;

// Hands out consecutive 64-byte-aligned ranges of one allocation: the caller first reserves every
// range (recording offsets), then allocates once and resolves the offsets to pointers. Ranges are
// counted in elements of a given size: 4 bytes for fp32 tensors and token ids, the backend's
// activation_bytes() for activation tensors.
class BufferPlan {
 public:
  size_t reserve(size_t elements, size_t element_bytes) {
    size_t offset = total_;
    total_ += (elements * element_bytes + 63) / 64 * 64;
    return offset;
  }
  size_t floats() const { return total_ / sizeof(float); }
  // The tensor at byte `offset` of an allocation starting at `base`.
  static float* at(float* base, size_t offset) {
    return reinterpret_cast<float*>(reinterpret_cast<char*>(base) + offset);
  }

 private:
  size_t total_ = 0;
};

}  // namespace

// Forward activations for a batch of B sequences of T tokens; everything the backward pass reads.
struct Gpt::Activations {
  struct Layer {
    float *ln1, *ln1_mean, *ln1_rstd, *qkv, *atty, *att, *attn_proj, *residual2;
    float *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu, *fc_proj, *residual3;
  };
  int B = 0, T = 0;
  DeviceBuffer buffer;
  int32_t *tokens, *targets;
  float* encoded;
  std::vector<Layer> layers;
  float *lnf, *lnf_mean, *lnf_rstd, *logits, *losses;
};

// Backward-pass buffers for one layer at a time, reused by every layer.
struct Gpt::Scratch {
  DeviceBuffer buffer;
  float *d_residual, *d_ln, *d_qkv, *d_atty, *d_att, *d_fch, *d_fch_gelu, *d_lnf;
};

Gpt::Gpt(backend::Backend& backend, const GptConfig& config)
    : backend_(backend), config_(config), layout_(config) {
  config_.validate();
  params_ = DeviceBuffer(backend_, layout_.total());
  grads_ = DeviceBuffer(backend_, layout_.total());
}

void Gpt::init_random(uint64_t seed) {
  std::vector<float> values(layout_.total(), 0.0f);
  Rng rng(seed);
  const float residual_std = 0.02f / std::sqrt(2.0f * config_.num_layers);
  for (const ParameterTensor& t : layout_.tensors()) {
    float* p = values.data() + t.offset;
    bool is_gain = t.name.find("ln_") != std::string::npos && t.name.ends_with(".weight");
    bool is_bias = t.name.ends_with(".bias");
    bool is_residual_proj = t.name.ends_with("c_proj.weight");
    if (is_gain) std::fill(p, p + t.numel, 1.0f);
    else if (!is_bias) rng.fill_normal(p, t.numel, is_residual_proj ? residual_std : 0.02f);
  }
  parameters_from_host(values);
}

std::vector<float> Gpt::parameters_to_host() const {
  std::vector<float> values(layout_.total());
  backend_.copy_to_host(values.data(), params_.get(), values.size() * sizeof(float));
  return values;
}

void Gpt::parameters_from_host(const std::vector<float>& values) {
  require(values.size() == layout_.total(), "parameter vector has {} values, the model needs {}",
          values.size(), layout_.total());
  backend_.copy_to_device(params_.get(), values.data(), values.size() * sizeof(float));
}

std::vector<float> Gpt::gradients_to_host() const {
  std::vector<float> values(layout_.total());
  backend_.copy_to_host(values.data(), grads_.get(), values.size() * sizeof(float));
  return values;
}

std::vector<float> Gpt::adam_m_to_host() const {
  std::vector<float> values(layout_.total(), 0.0f);
  if (adam_m_.get()) backend_.copy_to_host(values.data(), adam_m_.get(), values.size() * sizeof(float));
  return values;
}

std::vector<float> Gpt::adam_v_to_host() const {
  std::vector<float> values(layout_.total(), 0.0f);
  if (adam_v_.get()) backend_.copy_to_host(values.data(), adam_v_.get(), values.size() * sizeof(float));
  return values;
}

void Gpt::adam_state_from_host(const std::vector<float>& m, const std::vector<float>& v) {
  require(m.size() == layout_.total() && v.size() == layout_.total(),
          "optimizer state has {} and {} values, the model needs {}", m.size(), v.size(),
          layout_.total());
  if (!adam_m_.get()) {
    adam_m_ = DeviceBuffer(backend_, layout_.total());
    adam_v_ = DeviceBuffer(backend_, layout_.total());
  }
  backend_.copy_to_device(adam_m_.get(), m.data(), m.size() * sizeof(float));
  backend_.copy_to_device(adam_v_.get(), v.data(), v.size() * sizeof(float));
}

void Gpt::check_tokens(const int32_t* tokens, size_t count, const char* what) const {
  for (size_t i = 0; i < count; ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      fail("{} {} at position {} is outside the model's vocabulary [0, {})", what, tokens[i], i,
           config_.vocab_size);
    }
  }
}

void Gpt::ensure_activations(int B, int T) {
  if (acts_ && acts_->B == B && acts_->T == T) return;
  const size_t C = config_.channels, V = config_.vocab_size;
  const size_t BT = static_cast<size_t>(B) * T;
  const size_t act = backend_.activation_bytes(), f32 = sizeof(float);
  const size_t att_record = backend_.attention_record_floats(B, T, config_.num_heads);
  acts_.reset();  // free the old buffers before allocating new ones
  auto acts = std::make_shared<Activations>();
  acts->B = B;
  acts->T = T;

  BufferPlan plan;
  size_t tokens = plan.reserve(BT, f32), targets = plan.reserve(BT, f32),
         encoded = plan.reserve(BT * C, act);
  struct LayerOffsets {
    size_t ln1, ln1_mean, ln1_rstd, qkv, atty, att, attn_proj, residual2;
    size_t ln2, ln2_mean, ln2_rstd, fch, fch_gelu, fc_proj, residual3;
  };
  std::vector<LayerOffsets> offsets(config_.num_layers);
  for (LayerOffsets& o : offsets) {
    o.ln1 = plan.reserve(BT * C, act);
    o.ln1_mean = plan.reserve(BT, f32);
    o.ln1_rstd = plan.reserve(BT, f32);
    o.qkv = plan.reserve(BT * 3 * C, act);
    o.atty = plan.reserve(BT * C, act);
    o.att = plan.reserve(att_record, f32);
    o.attn_proj = plan.reserve(BT * C, act);
    o.residual2 = plan.reserve(BT * C, act);
    o.ln2 = plan.reserve(BT * C, act);
    o.ln2_mean = plan.reserve(BT, f32);
    o.ln2_rstd = plan.reserve(BT, f32);
    o.fch = plan.reserve(BT * 4 * C, act);
    o.fch_gelu = plan.reserve(BT * 4 * C, act);
    o.fc_proj = plan.reserve(BT * C, act);
    o.residual3 = plan.reserve(BT * C, act);
  }
  size_t lnf = plan.reserve(BT * C, act), lnf_mean = plan.reserve(BT, f32),
         lnf_rstd = plan.reserve(BT, f32);
  size_t logits = plan.reserve(BT * V, act), losses = plan.reserve(BT, f32);

  acts->buffer = DeviceBuffer(backend_, plan.floats());
  float* base = acts->buffer.get();
  auto at = [base](size_t offset) { return BufferPlan::at(base, offset); };
  acts->tokens = reinterpret_cast<int32_t*>(at(tokens));
  acts->targets = reinterpret_cast<int32_t*>(at(targets));
  acts->encoded = at(encoded);
  for (const LayerOffsets& o : offsets) {
    acts->layers.push_back({at(o.ln1), at(o.ln1_mean), at(o.ln1_rstd), at(o.qkv), at(o.atty),
                            at(o.att), at(o.attn_proj), at(o.residual2), at(o.ln2),
                            at(o.ln2_mean), at(o.ln2_rstd), at(o.fch), at(o.fch_gelu),
                            at(o.fc_proj), at(o.residual3)});
  }
  acts->lnf = at(lnf);
  acts->lnf_mean = at(lnf_mean);
  acts->lnf_rstd = at(lnf_rstd);
  acts->logits = at(logits);
  acts->losses = at(losses);
  acts_ = std::move(acts);

  scratch_.reset();
  auto scratch = std::make_shared<Scratch>();
  BufferPlan splan;
  size_t d_residual = splan.reserve(BT * C, act), d_ln = splan.reserve(BT * C, act),
         d_qkv = splan.reserve(BT * 3 * C, act), d_atty = splan.reserve(BT * C, act),
         d_att = splan.reserve(backend_.attention_scratch_floats(B, T, config_.num_heads), f32),
         d_fch = splan.reserve(BT * 4 * C, act), d_fch_gelu = splan.reserve(BT * 4 * C, act),
         d_lnf = splan.reserve(BT * C, act);
  scratch->buffer = DeviceBuffer(backend_, splan.floats());
  float* s = scratch->buffer.get();
  auto sat = [s](size_t offset) { return BufferPlan::at(s, offset); };
  scratch->d_residual = sat(d_residual);
  scratch->d_ln = sat(d_ln);
  scratch->d_qkv = sat(d_qkv);
  scratch->d_atty = sat(d_atty);
  scratch->d_att = sat(d_att);
  scratch->d_fch = sat(d_fch);
  scratch->d_fch_gelu = sat(d_fch_gelu);
  scratch->d_lnf = sat(d_lnf);
  scratch_ = std::move(scratch);
}

float Gpt::forward(const int32_t* tokens, const int32_t* targets, int B, int T) {
  run_forward(tokens, targets, B, T);
  if (!targets) return std::numeric_limits<float>::quiet_NaN();
  std::vector<float> losses = losses_to_host();
  double sum = 0;
  for (float value : losses) sum += value;
  return static_cast<float>(sum / static_cast<double>(losses.size()));
}

void Gpt::run_forward(const int32_t* tokens, const int32_t* targets, int B, int T) {
  require(B > 0, "batch size must be positive, got {}", B);
  require(T > 0 && T <= config_.max_seq_len,
          "sequence length {} does not fit the model (n_positions = {})", T, config_.max_seq_len);
  const size_t BT = static_cast<size_t>(B) * T;
  check_tokens(tokens, BT, "token");
  if (targets) check_tokens(targets, BT, "target");
  ensure_activations(B, T);

  const int C = config_.channels, NH = config_.num_heads, V = config_.vocab_size;
  const float* p = params_.get();
  Activations& a = *acts_;
  backend::Backend& k = backend_;
  k.copy_to_device(a.tokens, tokens, BT * sizeof(int32_t));
  if (targets) k.copy_to_device(a.targets, targets, BT * sizeof(int32_t));

  k.encoder_forward(a.encoded, a.tokens, p + layout_.wte, p + layout_.wpe, B, T, C);
  // Each residual add is fused with the LayerNorm that reads its result: the block's ln2, and the
  // next block's ln1 (or ln_f after the last block).
  const int L = config_.num_layers;
  if (L > 0) {
    const Activations::Layer& h0 = a.layers[0];
    k.layernorm_forward(h0.ln1, h0.ln1_mean, h0.ln1_rstd, a.encoded, p + layout_.layers[0].ln1_w,
                        p + layout_.layers[0].ln1_b, BT, C);
  } else {
    k.layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, a.encoded, p + layout_.lnf_w,
                        p + layout_.lnf_b, BT, C);
  }
  const float* x = a.encoded;  // the residual stream entering each block
  for (int l = 0; l < L; ++l) {
    const LayerOffsets& w = layout_.layers[l];
    const Activations::Layer& h = a.layers[l];
    k.matmul_forward(h.qkv, h.ln1, p + w.qkv_w, p + w.qkv_b, BT, C, 3 * C);
    k.attention_forward(h.atty, h.att, h.qkv, B, T, C, NH);
    k.matmul_forward(h.attn_proj, h.atty, p + w.attn_proj_w, p + w.attn_proj_b, BT, C, C);
    k.residual_layernorm_forward(h.residual2, h.ln2, h.ln2_mean, h.ln2_rstd, x, h.attn_proj,
                                 p + w.ln2_w, p + w.ln2_b, BT, C);
    k.matmul_gelu_forward(h.fch, h.fch_gelu, h.ln2, p + w.fc_w, p + w.fc_b, BT, C, 4 * C);
    k.matmul_forward(h.fc_proj, h.fch_gelu, p + w.fc_proj_w, p + w.fc_proj_b, BT, 4 * C, C);
    const bool last = l + 1 == L;
    const Activations::Layer* next = last ? nullptr : &a.layers[l + 1];
    k.residual_layernorm_forward(
        h.residual3, last ? a.lnf : next->ln1, last ? a.lnf_mean : next->ln1_mean,
        last ? a.lnf_rstd : next->ln1_rstd, h.residual2, h.fc_proj,
        p + (last ? layout_.lnf_w : layout_.layers[l + 1].ln1_w),
        p + (last ? layout_.lnf_b : layout_.layers[l + 1].ln1_b), BT, C);
    x = h.residual3;
  }
  k.matmul_forward(a.logits, a.lnf, p + layout_.wte, nullptr, BT, C, V);
  last_B_ = B;
  last_T_ = T;
  last_has_targets_ = targets != nullptr;
  logits_valid_ = true;
  if (targets) k.cross_entropy_forward(a.losses, a.logits, a.targets, BT, V);
}

std::vector<float> Gpt::logits_to_host() const {
  require(acts_ != nullptr && logits_valid_, "no logits: run a forward pass first");
  std::vector<float> values(static_cast<size_t>(last_B_) * last_T_ * config_.vocab_size);
  backend_.activations_to_host(values.data(), acts_->logits, values.size());
  return values;
}

std::vector<float> Gpt::losses_to_host() const {
  require(acts_ != nullptr && last_has_targets_, "no losses: run a forward pass with targets first");
  std::vector<float> values(static_cast<size_t>(last_B_) * last_T_);
  backend_.copy_to_host(values.data(), acts_->losses, values.size() * sizeof(float));
  return values;
}

void Gpt::zero_grad() { backend_.fill_zero(grads_.get(), layout_.total() * sizeof(float)); }

void Gpt::backward(float loss_scale) {
  require(acts_ != nullptr && last_has_targets_ && logits_valid_,
          "backward needs a forward pass with targets first");
  const int B = last_B_, T = last_T_, C = config_.channels, NH = config_.num_heads,
            V = config_.vocab_size;
  const size_t BT = static_cast<size_t>(B) * T;
  const float* p = params_.get();
  float* g = grads_.get();
  Activations& a = *acts_;
  Scratch& s = *scratch_;
  backend::Backend& k = backend_;
  // Activation gradients are stored in the backend's activation type (bf16 on mixed-precision
  // devices), so a buffer of n elements holds n * activation_bytes() bytes.
  const size_t act = k.activation_bytes();
  auto zero = [&](float* ptr, size_t elements) { k.fill_zero(ptr, elements * act); };

  // Loss = mean over BT positions, so each position's loss has weight loss_scale / BT. The logits
  // buffer becomes dlogits in place: the forward values are not needed after this.
  float* dlogits = a.logits;
  k.cross_entropy_backward(dlogits, a.logits, a.targets, loss_scale / static_cast<float>(BT), BT, V);
  logits_valid_ = false;
  zero(s.d_lnf, BT * C);
  k.matmul_backward(s.d_lnf, g + layout_.wte, nullptr, dlogits, a.lnf, p + layout_.wte, BT, C, V);

  const float* last_x = config_.num_layers > 0 ? a.layers.back().residual3 : a.encoded;
  zero(s.d_residual, BT * C);
  k.layernorm_backward(s.d_residual, g + layout_.lnf_w, g + layout_.lnf_b, s.d_lnf, last_x,
                       p + layout_.lnf_w, a.lnf_mean, a.lnf_rstd, BT, C);

  // d_residual carries the gradient of the residual stream; each block adds its branches to it.
  for (int l = config_.num_layers - 1; l >= 0; --l) {
    const LayerOffsets& w = layout_.layers[l];
    const Activations::Layer& h = a.layers[l];
    const float* x = l == 0 ? a.encoded : a.layers[l - 1].residual3;

    zero(s.d_fch_gelu, BT * 4 * C);
    k.matmul_backward(s.d_fch_gelu, g + w.fc_proj_w, g + w.fc_proj_b, s.d_residual, h.fch_gelu,
                      p + w.fc_proj_w, BT, 4 * C, C);
    zero(s.d_fch, BT * 4 * C);
    k.gelu_backward(s.d_fch, h.fch, s.d_fch_gelu, BT * 4 * C);
    zero(s.d_ln, BT * C);
    k.matmul_backward(s.d_ln, g + w.fc_w, g + w.fc_b, s.d_fch, h.ln2, p + w.fc_w, BT, C, 4 * C);
    k.layernorm_backward(s.d_residual, g + w.ln2_w, g + w.ln2_b, s.d_ln, h.residual2, p + w.ln2_w,
                         h.ln2_mean, h.ln2_rstd, BT, C);

    zero(s.d_atty, BT * C);
    k.matmul_backward(s.d_atty, g + w.attn_proj_w, g + w.attn_proj_b, s.d_residual, h.atty,
                      p + w.attn_proj_w, BT, C, C);
    zero(s.d_qkv, BT * 3 * C);
    k.attention_backward(s.d_qkv, s.d_att, s.d_atty, h.atty, h.qkv, h.att, B, T, C, NH);
    zero(s.d_ln, BT * C);
    k.matmul_backward(s.d_ln, g + w.qkv_w, g + w.qkv_b, s.d_qkv, h.ln1, p + w.qkv_w, BT, C, 3 * C);
    k.layernorm_backward(s.d_residual, g + w.ln1_w, g + w.ln1_b, s.d_ln, x, p + w.ln1_w, h.ln1_mean,
                         h.ln1_rstd, BT, C);
  }
  k.encoder_backward(g + layout_.wte, g + layout_.wpe, s.d_residual, a.tokens, B, T, C);
}

float Gpt::gradient_norm() const {
  return backend::global_norm(backend_.sum_of_squares(grads_.get(), layout_.total()));
}

void Gpt::adamw_step(const AdamWConfig& adamw, float learning_rate, int step, float grad_scale) {
  update_parameters(adamw, learning_rate, step, grad_scale, nullptr, 0.0f);
}

void Gpt::update_parameters(const AdamWConfig& adamw, float learning_rate, int step,
                            float grad_scale, const double* grad_sum_of_squares, float clip) {
  require(step >= 1, "optimizer step must be >= 1, got {}", step);
  if (!adam_m_.get()) {
    adam_m_ = DeviceBuffer(backend_, layout_.total());
    adam_v_ = DeviceBuffer(backend_, layout_.total());
  }
  backend::AdamWStep update;
  update.learning_rate = learning_rate;
  update.beta1 = adamw.beta1;
  update.beta2 = adamw.beta2;
  update.epsilon = adamw.epsilon;
  update.step = step;
  update.grad_scale = grad_scale;
  auto run = [&](size_t begin, size_t end, float weight_decay) {
    update.weight_decay = weight_decay;
    float* p = params_.get() + begin;
    const float* g = grads_.get() + begin;
    float* m = adam_m_.get() + begin;
    float* v = adam_v_.get() + begin;
    if (grad_sum_of_squares) {
      backend_.adamw_update_clipped(p, g, m, v, end - begin, update, grad_sum_of_squares, clip);
    } else {
      backend_.adamw_update(p, g, m, v, end - begin, update);
    }
  };
  const size_t split = layout_.decay_end();
  run(0, split, adamw.weight_decay);
  run(split, layout_.total(), 0.0f);
}

void Gpt::begin_step() {
  if (!step_stats_.get()) step_stats_ = DeviceBuffer(backend_, 2 * sizeof(double) / sizeof(float));
  zero_grad();
  backend_.fill_zero(step_stats_.get(), 2 * sizeof(double));
}

void Gpt::forward_backward(const int32_t* tokens, const int32_t* targets, int B, int T,
                           float loss_scale) {
  require(step_stats_.get() != nullptr, "forward_backward needs begin_step first");
  require(targets != nullptr, "forward_backward needs targets");
  run_forward(tokens, targets, B, T);
  double* stats = reinterpret_cast<double*>(step_stats_.get());
  const size_t BT = static_cast<size_t>(B) * T;
  backend_.accumulate_sum(stats + kStepLoss, acts_->losses, BT,
                          static_cast<double>(loss_scale) / static_cast<double>(BT));
  backward(loss_scale);
}

Gpt::StepResult Gpt::finish_step(const AdamWConfig& adamw, float learning_rate, int step,
                                 float clip) {
  require(step_stats_.get() != nullptr, "finish_step needs begin_step first");
  double* stats = reinterpret_cast<double*>(step_stats_.get());
  backend_.sum_of_squares_to(stats + kStepGradSumOfSquares, grads_.get(), layout_.total());
  update_parameters(adamw, learning_rate, step, 1.0f, stats + kStepGradSumOfSquares, clip);
  double host[2];
  backend_.copy_to_host(host, stats, sizeof(host));
  return {static_cast<float>(host[kStepLoss]), backend::global_norm(host[kStepGradSumOfSquares])};
}

namespace {

// The single-position buffers of decode(), in one allocation of `floats()` floats.
struct DecodePlan {
  size_t x, ln, attn_proj, atty, residual, fc_proj, qkv, fch, fch_gelu, logits, mean, rstd;
  BufferPlan plan;
  DecodePlan(size_t B, size_t C, size_t V, size_t act) {
    const size_t BC = B * C;
    x = plan.reserve(BC, act);
    ln = plan.reserve(BC, act);
    attn_proj = plan.reserve(BC, act);
    atty = plan.reserve(BC, act);
    residual = plan.reserve(BC, act);
    fc_proj = plan.reserve(BC, act);
    qkv = plan.reserve(3 * BC, act);
    fch = plan.reserve(4 * BC, act);
    fch_gelu = plan.reserve(4 * BC, act);
    logits = plan.reserve(B * V, act);
    mean = plan.reserve(B, sizeof(float));
    rstd = plan.reserve(B, sizeof(float));
  }
};

}  // namespace

void Gpt::start_decoding(int B) {
  require(B > 0, "batch size must be positive, got {}", B);
  const size_t C = config_.channels, L = config_.num_layers, maxT = config_.max_seq_len,
               V = config_.vocab_size, act = backend_.activation_bytes();
  k_cache_ = DeviceBuffer();
  v_cache_ = DeviceBuffer();
  const size_t cache_floats = (L * B * maxT * C * act + sizeof(float) - 1) / sizeof(float);
  k_cache_ = DeviceBuffer(backend_, cache_floats);
  v_cache_ = DeviceBuffer(backend_, cache_floats);
  decode_acts_ = DeviceBuffer(backend_, DecodePlan(B, C, V, act).plan.floats());
  decode_tokens_ = DeviceBuffer(backend_, B);
  decode_B_ = B;
  decode_next_pos_ = 0;
}

std::vector<float> Gpt::decode(const int32_t* tokens, int pos) {
  require(decode_B_ > 0, "decode called before start_decoding");
  require(pos == decode_next_pos_, "decode position {} out of order (expected {})", pos,
          decode_next_pos_);
  require(pos < config_.max_seq_len, "sequence reached the model's context of {} tokens",
          config_.max_seq_len);
  const int B = decode_B_, C = config_.channels, NH = config_.num_heads, V = config_.vocab_size,
            maxT = config_.max_seq_len;
  check_tokens(tokens, B, "token");
  backend::Backend& k = backend_;
  const float* p = params_.get();
  const size_t act = k.activation_bytes();
  const DecodePlan plan(B, C, V, act);
  float* base = decode_acts_.get();
  auto at = [base](size_t offset) { return BufferPlan::at(base, offset); };
  float *x = at(plan.x), *ln = at(plan.ln), *attn_proj = at(plan.attn_proj), *atty = at(plan.atty),
        *residual = at(plan.residual), *fc_proj = at(plan.fc_proj), *qkv = at(plan.qkv),
        *fch = at(plan.fch), *fch_gelu = at(plan.fch_gelu), *logits = at(plan.logits),
        *mean = at(plan.mean), *rstd = at(plan.rstd);
  const size_t BC = static_cast<size_t>(B) * C;
  int32_t* device_tokens = reinterpret_cast<int32_t*>(decode_tokens_.get());
  k.copy_to_device(device_tokens, tokens, B * sizeof(int32_t));

  // Each sequence has one position here, so the embedding is wte[token] + wpe[pos].
  k.encoder_forward(x, device_tokens, p + layout_.wte, p + layout_.wpe + static_cast<size_t>(pos) * C,
                    B, 1, C);
  const size_t layer_cache_bytes = static_cast<size_t>(B) * maxT * C * act;
  for (int l = 0; l < config_.num_layers; ++l) {
    const LayerOffsets& w = layout_.layers[l];
    k.layernorm_forward(ln, mean, rstd, x, p + w.ln1_w, p + w.ln1_b, B, C);
    k.matmul_forward(qkv, ln, p + w.qkv_w, p + w.qkv_b, B, C, 3 * C);
    k.attention_decode(atty, qkv, BufferPlan::at(k_cache_.get(), l * layer_cache_bytes),
                       BufferPlan::at(v_cache_.get(), l * layer_cache_bytes), B, pos, maxT, C, NH);
    k.matmul_forward(attn_proj, atty, p + w.attn_proj_w, p + w.attn_proj_b, B, C, C);
    k.residual_layernorm_forward(residual, ln, mean, rstd, x, attn_proj, p + w.ln2_w, p + w.ln2_b,
                                 B, C);
    k.matmul_gelu_forward(fch, fch_gelu, ln, p + w.fc_w, p + w.fc_b, B, C, 4 * C);
    k.matmul_forward(fc_proj, fch_gelu, p + w.fc_proj_w, p + w.fc_proj_b, B, 4 * C, C);
    k.residual_forward(x, residual, fc_proj, BC);
  }
  k.layernorm_forward(ln, mean, rstd, x, p + layout_.lnf_w, p + layout_.lnf_b, B, C);
  k.matmul_forward(logits, ln, p + layout_.wte, nullptr, B, C, V);
  std::vector<float> host(static_cast<size_t>(B) * V);
  k.activations_to_host(host.data(), logits, host.size());
  decode_next_pos_ = pos + 1;
  return host;
}

}  // namespace switchyard::model
