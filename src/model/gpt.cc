#include "model/gpt.h"

#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/rng.h"

namespace switchyard::model {

namespace {

// Hands out consecutive 64-byte-aligned float ranges of one allocation: the caller first reserves
// every range (recording offsets), then allocates once and resolves the offsets to pointers.
class BufferPlan {
 public:
  size_t reserve(size_t floats) {
    size_t offset = total_;
    total_ += (floats + 15) / 16 * 16;
    return offset;
  }
  size_t total() const { return total_; }

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
    for (size_t i = 0; i < t.numel; ++i) {
      if (is_gain) p[i] = 1.0f;
      else if (is_bias) p[i] = 0.0f;
      else p[i] = rng.normal() * (is_residual_proj ? residual_std : 0.02f);
    }
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
  const size_t C = config_.channels, NH = config_.num_heads, V = config_.vocab_size;
  const size_t BT = static_cast<size_t>(B) * T;
  acts_.reset();  // free the old buffers before allocating new ones
  auto acts = std::make_shared<Activations>();
  acts->B = B;
  acts->T = T;

  BufferPlan plan;
  size_t tokens = plan.reserve(BT), targets = plan.reserve(BT), encoded = plan.reserve(BT * C);
  struct LayerOffsets {
    size_t ln1, ln1_mean, ln1_rstd, qkv, atty, att, attn_proj, residual2;
    size_t ln2, ln2_mean, ln2_rstd, fch, fch_gelu, fc_proj, residual3;
  };
  std::vector<LayerOffsets> offsets(config_.num_layers);
  for (LayerOffsets& o : offsets) {
    o.ln1 = plan.reserve(BT * C);
    o.ln1_mean = plan.reserve(BT);
    o.ln1_rstd = plan.reserve(BT);
    o.qkv = plan.reserve(BT * 3 * C);
    o.atty = plan.reserve(BT * C);
    o.att = plan.reserve(static_cast<size_t>(B) * NH * T * T);
    o.attn_proj = plan.reserve(BT * C);
    o.residual2 = plan.reserve(BT * C);
    o.ln2 = plan.reserve(BT * C);
    o.ln2_mean = plan.reserve(BT);
    o.ln2_rstd = plan.reserve(BT);
    o.fch = plan.reserve(BT * 4 * C);
    o.fch_gelu = plan.reserve(BT * 4 * C);
    o.fc_proj = plan.reserve(BT * C);
    o.residual3 = plan.reserve(BT * C);
  }
  size_t lnf = plan.reserve(BT * C), lnf_mean = plan.reserve(BT), lnf_rstd = plan.reserve(BT);
  size_t logits = plan.reserve(BT * V), losses = plan.reserve(BT);

  acts->buffer = DeviceBuffer(backend_, plan.total());
  float* base = acts->buffer.get();
  acts->tokens = reinterpret_cast<int32_t*>(base + tokens);
  acts->targets = reinterpret_cast<int32_t*>(base + targets);
  acts->encoded = base + encoded;
  for (const LayerOffsets& o : offsets) {
    acts->layers.push_back({base + o.ln1, base + o.ln1_mean, base + o.ln1_rstd, base + o.qkv,
                            base + o.atty, base + o.att, base + o.attn_proj, base + o.residual2,
                            base + o.ln2, base + o.ln2_mean, base + o.ln2_rstd, base + o.fch,
                            base + o.fch_gelu, base + o.fc_proj, base + o.residual3});
  }
  acts->lnf = base + lnf;
  acts->lnf_mean = base + lnf_mean;
  acts->lnf_rstd = base + lnf_rstd;
  acts->logits = base + logits;
  acts->losses = base + losses;
  acts_ = std::move(acts);

  scratch_.reset();
  auto scratch = std::make_shared<Scratch>();
  BufferPlan splan;
  size_t d_residual = splan.reserve(BT * C), d_ln = splan.reserve(BT * C),
         d_qkv = splan.reserve(BT * 3 * C), d_atty = splan.reserve(BT * C),
         d_att = splan.reserve(static_cast<size_t>(B) * NH * T * T),
         d_fch = splan.reserve(BT * 4 * C), d_fch_gelu = splan.reserve(BT * 4 * C),
         d_lnf = splan.reserve(BT * C);
  scratch->buffer = DeviceBuffer(backend_, splan.total());
  float* s = scratch->buffer.get();
  scratch->d_residual = s + d_residual;
  scratch->d_ln = s + d_ln;
  scratch->d_qkv = s + d_qkv;
  scratch->d_atty = s + d_atty;
  scratch->d_att = s + d_att;
  scratch->d_fch = s + d_fch;
  scratch->d_fch_gelu = s + d_fch_gelu;
  scratch->d_lnf = s + d_lnf;
  scratch_ = std::move(scratch);
}

float Gpt::forward(const int32_t* tokens, const int32_t* targets, int B, int T) {
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
  const float* x = a.encoded;  // the residual stream entering each block
  for (int l = 0; l < config_.num_layers; ++l) {
    const LayerOffsets& w = layout_.layers[l];
    const Activations::Layer& h = a.layers[l];
    k.layernorm_forward(h.ln1, h.ln1_mean, h.ln1_rstd, x, p + w.ln1_w, p + w.ln1_b, BT, C);
    k.matmul_forward(h.qkv, h.ln1, p + w.qkv_w, p + w.qkv_b, BT, C, 3 * C);
    k.attention_forward(h.atty, h.att, h.qkv, B, T, C, NH);
    k.matmul_forward(h.attn_proj, h.atty, p + w.attn_proj_w, p + w.attn_proj_b, BT, C, C);
    k.residual_forward(h.residual2, x, h.attn_proj, BT * C);
    k.layernorm_forward(h.ln2, h.ln2_mean, h.ln2_rstd, h.residual2, p + w.ln2_w, p + w.ln2_b, BT, C);
    k.matmul_forward(h.fch, h.ln2, p + w.fc_w, p + w.fc_b, BT, C, 4 * C);
    k.gelu_forward(h.fch_gelu, h.fch, BT * 4 * C);
    k.matmul_forward(h.fc_proj, h.fch_gelu, p + w.fc_proj_w, p + w.fc_proj_b, BT, 4 * C, C);
    k.residual_forward(h.residual3, h.residual2, h.fc_proj, BT * C);
    x = h.residual3;
  }
  k.layernorm_forward(a.lnf, a.lnf_mean, a.lnf_rstd, x, p + layout_.lnf_w, p + layout_.lnf_b, BT, C);
  k.matmul_forward(a.logits, a.lnf, p + layout_.wte, nullptr, BT, C, V);
  last_B_ = B;
  last_T_ = T;
  last_has_targets_ = targets != nullptr;
  logits_valid_ = true;
  if (!targets) return std::numeric_limits<float>::quiet_NaN();

  k.cross_entropy_forward(a.losses, a.logits, a.targets, BT, V);
  std::vector<float> losses = losses_to_host();
  double sum = 0;
  for (float value : losses) sum += value;
  return static_cast<float>(sum / static_cast<double>(BT));
}

std::vector<float> Gpt::logits_to_host() const {
  require(acts_ != nullptr && logits_valid_, "no logits: run a forward pass first");
  std::vector<float> values(static_cast<size_t>(last_B_) * last_T_ * config_.vocab_size);
  backend_.copy_to_host(values.data(), acts_->logits, values.size() * sizeof(float));
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
  auto zero = [&](float* ptr, size_t floats) { k.fill_zero(ptr, floats * sizeof(float)); };

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
    k.attention_backward(s.d_qkv, s.d_att, s.d_atty, h.qkv, h.att, B, T, C, NH);
    zero(s.d_ln, BT * C);
    k.matmul_backward(s.d_ln, g + w.qkv_w, g + w.qkv_b, s.d_qkv, h.ln1, p + w.qkv_w, BT, C, 3 * C);
    k.layernorm_backward(s.d_residual, g + w.ln1_w, g + w.ln1_b, s.d_ln, x, p + w.ln1_w, h.ln1_mean,
                         h.ln1_rstd, BT, C);
  }
  k.encoder_backward(g + layout_.wte, g + layout_.wpe, s.d_residual, a.tokens, B, T, C);
}

float Gpt::gradient_norm() const {
  return static_cast<float>(std::sqrt(backend_.sum_of_squares(grads_.get(), layout_.total())));
}

void Gpt::adamw_step(const AdamWConfig& adamw, float learning_rate, int step, float grad_scale) {
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
  const size_t split = layout_.decay_end(), total = layout_.total();
  update.weight_decay = adamw.weight_decay;
  backend_.adamw_update(params_.get(), grads_.get(), adam_m_.get(), adam_v_.get(), split, update);
  update.weight_decay = 0.0f;
  backend_.adamw_update(params_.get() + split, grads_.get() + split, adam_m_.get() + split,
                        adam_v_.get() + split, total - split, update);
}

void Gpt::start_decoding(int B) {
  require(B > 0, "batch size must be positive, got {}", B);
  const size_t C = config_.channels, L = config_.num_layers, maxT = config_.max_seq_len,
               V = config_.vocab_size;
  k_cache_ = DeviceBuffer();
  v_cache_ = DeviceBuffer();
  k_cache_ = DeviceBuffer(backend_, L * B * maxT * C);
  v_cache_ = DeviceBuffer(backend_, L * B * maxT * C);
  // x, ln, mean, rstd, qkv, atty, proj, fch, fch_gelu, lnf, logits: laid out in decode().
  decode_acts_ = DeviceBuffer(backend_, B * (C * 6 + 3 * C + 8 * C + 2 + V) + 64);
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
  float* base = decode_acts_.get();
  const size_t BC = static_cast<size_t>(B) * C;
  float* x = base;
  float* ln = x + BC;
  float* attn_proj = ln + BC;
  float* atty = attn_proj + BC;
  float* residual = atty + BC;
  float* fc_proj = residual + BC;
  float* qkv = fc_proj + BC;
  float* fch = qkv + 3 * BC;
  float* fch_gelu = fch + 4 * BC;
  float* mean = fch_gelu + 4 * BC;
  float* rstd = mean + B;
  float* logits = rstd + B;
  int32_t* device_tokens = reinterpret_cast<int32_t*>(decode_tokens_.get());
  k.copy_to_device(device_tokens, tokens, B * sizeof(int32_t));

  // Each sequence has one position here, so the embedding is wte[token] + wpe[pos].
  k.encoder_forward(x, device_tokens, p + layout_.wte, p + layout_.wpe + static_cast<size_t>(pos) * C,
                    B, 1, C);
  const size_t layer_cache = static_cast<size_t>(B) * maxT * C;
  for (int l = 0; l < config_.num_layers; ++l) {
    const LayerOffsets& w = layout_.layers[l];
    k.layernorm_forward(ln, mean, rstd, x, p + w.ln1_w, p + w.ln1_b, B, C);
    k.matmul_forward(qkv, ln, p + w.qkv_w, p + w.qkv_b, B, C, 3 * C);
    k.attention_decode(atty, qkv, k_cache_.get() + l * layer_cache, v_cache_.get() + l * layer_cache,
                       B, pos, maxT, C, NH);
    k.matmul_forward(attn_proj, atty, p + w.attn_proj_w, p + w.attn_proj_b, B, C, C);
    k.residual_forward(residual, x, attn_proj, BC);
    k.layernorm_forward(ln, mean, rstd, residual, p + w.ln2_w, p + w.ln2_b, B, C);
    k.matmul_forward(fch, ln, p + w.fc_w, p + w.fc_b, B, C, 4 * C);
    k.gelu_forward(fch_gelu, fch, 4 * BC);
    k.matmul_forward(fc_proj, fch_gelu, p + w.fc_proj_w, p + w.fc_proj_b, B, 4 * C, C);
    k.residual_forward(x, residual, fc_proj, BC);
  }
  k.layernorm_forward(ln, mean, rstd, x, p + layout_.lnf_w, p + layout_.lnf_b, B, C);
  k.matmul_forward(logits, ln, p + layout_.wte, nullptr, B, C, V);
  std::vector<float> host(static_cast<size_t>(B) * V);
  k.copy_to_host(host.data(), logits, host.size() * sizeof(float));
  decode_next_pos_ = pos + 1;
  return host;
}

}  // namespace switchyard::model
