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

using backend::ops::AttentionSpec;
namespace ops = backend::ops;

Tensor f32(const float* data, std::initializer_list<int64_t> shape) {
  return Tensor::dense(data, DType::kF32, shape);
}
Tensor i32(const int32_t* data, std::initializer_list<int64_t> shape) {
  return Tensor::dense(data, DType::kI32, shape);
}
Tensor f64(const double* data) { return Tensor::dense(data, DType::kF64, {1}); }
int64_t i64(size_t n) { return static_cast<int64_t>(n); }

// q, k and v of GPT-2's packed projection [N, 3C] (q | k | v, each [NH, hs] per row) as [N, NH, hs]
// views with rows of 3C.
struct QkvViews {
  Tensor q, k, v;
};
QkvViews qkv_views(const Tensor& qkv, int C, int NH) {
  const int64_t N = qkv.shape[0], hs = C / NH;
  QkvViews views;
  Tensor* parts[] = {&views.q, &views.k, &views.v};
  for (int i = 0; i < 3; ++i) {
    Tensor t = Tensor::dense(qkv.data, qkv.dtype, {N, NH, hs});
    t.strides[0] = 3 * static_cast<int64_t>(C);
    t.data = static_cast<char*>(t.data) + static_cast<int64_t>(i) * C * dtype_bytes(qkv.dtype);
    *parts[i] = t;
  }
  return views;
}

AttentionSpec attention_spec(const GptConfig& config) {
  return {.heads = config.num_heads, .kv_heads = config.num_heads,
          .head_dim = config.channels / config.num_heads};
}

}  // namespace

Tensor Gpt::act(const float* data, std::initializer_list<int64_t> shape) const {
  return Tensor::dense(data, backend_.precision().activations, shape);
}

Tensor Gpt::weight(size_t offset, int64_t rows, int64_t cols) const {
  if (!weight_copy_.get()) return f32(params_.get() + offset, {rows, cols});
  const uint16_t* copy = reinterpret_cast<const uint16_t*>(weight_copy_.get());
  return Tensor::dense(copy + offset, backend_.precision().matmul_weights, {rows, cols});
}

void Gpt::refresh_weight_copy() {
  if (!weight_copy_.get()) return;
  const int64_t n = i64(layout_.total());
  backend_.run(ops::Cast{.out = Tensor::dense(weight_copy_.get(), backend_.precision().matmul_weights, {n}),
                         .inp = f32(params_.get(), {n})});
}

// Forward activations for a batch of B sequences of T tokens; everything the backward pass reads.
struct Gpt::Activations {
  struct Layer {
    float *ln1, *ln1_mean, *ln1_rstd, *qkv, *atty, *att, *attn_proj, *residual2;
    float *ln2, *ln2_mean, *ln2_rstd, *fch, *fch_gelu, *fc_proj, *residual3;
  };
  int B = 0, T = 0;
  DeviceBuffer buffer;
  int32_t *tokens, *targets;
  int32_t* positions;  // t for the t-th token of each sequence: what the position embedding reads
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
  // Backends whose products read bf16 weights get a bf16 copy of the parameters, refreshed by
  // every optimizer step (and on load).
  const DType weights = backend_.precision().matmul_weights;
  if (weights != DType::kF32) {
    weight_copy_ = DeviceBuffer(backend_, (storage_bytes(weights, i64(layout_.total())) + 3) / 4);
  }
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
  refresh_weight_copy();
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
  const size_t act = dtype_bytes(backend_.precision().activations), f32 = sizeof(float);
  const size_t att_record = backend_.attention_record_floats(attention_spec(config_), B, T);
  acts_.reset();  // free the old buffers before allocating new ones
  auto acts = std::make_shared<Activations>();
  acts->B = B;
  acts->T = T;

  BufferPlan plan;
  size_t tokens = plan.reserve(BT, f32), targets = plan.reserve(BT, f32),
         positions = plan.reserve(BT, f32), encoded = plan.reserve(BT * C, act);
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
  acts->positions = reinterpret_cast<int32_t*>(at(positions));
  std::vector<int32_t> host_positions(BT);
  for (size_t i = 0; i < BT; ++i) host_positions[i] = static_cast<int32_t>(i % T);
  backend_.copy_to_device(acts->positions, host_positions.data(), BT * sizeof(int32_t));
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
         d_att = splan.reserve(backend_.attention_scratch_floats(attention_spec(config_), B, T), f32),
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

  const int64_t N = i64(BT);
  const Tensor tokens_t = i32(a.tokens, {N});
  k.run(ops::Embedding{.out = act(a.encoded, {N, C}), .ids = tokens_t,
                       .table = f32(p + layout_.wte, {V, C}),
                       .position_ids = i32(a.positions, {N}),
                       .position_table = f32(p + layout_.wpe, {config_.max_seq_len, C})});
  auto layernorm = [&](float* out, float* mean, float* rstd, const float* inp, size_t w_off,
                       size_t b_off) {
    k.run(ops::LayerNorm{.out = act(out, {N, C}), .mean = f32(mean, {N}), .rstd = f32(rstd, {N}),
                         .inp = act(inp, {N, C}), .weight = f32(p + w_off, {C}),
                         .bias = f32(p + b_off, {C})});
  };
  // Each residual add is fused with the LayerNorm that reads its result: the block's ln2, and the
  // next block's ln1 (or ln_f after the last block).
  const int L = config_.num_layers;
  if (L > 0) {
    const Activations::Layer& h0 = a.layers[0];
    layernorm(h0.ln1, h0.ln1_mean, h0.ln1_rstd, a.encoded, layout_.layers[0].ln1_w,
              layout_.layers[0].ln1_b);
  } else {
    layernorm(a.lnf, a.lnf_mean, a.lnf_rstd, a.encoded, layout_.lnf_w, layout_.lnf_b);
  }
  const AttentionSpec spec = attention_spec(config_);
  const float* x = a.encoded;  // the residual stream entering each block
  for (int l = 0; l < L; ++l) {
    const LayerOffsets& w = layout_.layers[l];
    const Activations::Layer& h = a.layers[l];
    const Tensor qkv = act(h.qkv, {N, 3 * C});
    k.run(ops::Linear{.out = qkv, .inp = act(h.ln1, {N, C}), .weight = weight(w.qkv_w, 3 * C, C),
                      .bias = f32(p + w.qkv_b, {3 * C})});
    const QkvViews views = qkv_views(qkv, C, NH);
    k.run(ops::Attention{.out = act(h.atty, {N, C}),
                         .record = f32(h.att, {i64(backend_.attention_record_floats(spec, B, T))}),
                         .q = views.q, .k = views.k, .v = views.v, .batch = B, .seq = T,
                         .spec = spec});
    k.run(ops::Linear{.out = act(h.attn_proj, {N, C}), .inp = act(h.atty, {N, C}),
                      .weight = weight(w.attn_proj_w, C, C), .bias = f32(p + w.attn_proj_b, {C})});
    k.run(ops::AddLayerNorm{.residual = act(h.residual2, {N, C}), .out = act(h.ln2, {N, C}),
                            .mean = f32(h.ln2_mean, {N}), .rstd = f32(h.ln2_rstd, {N}),
                            .a = act(x, {N, C}), .b = act(h.attn_proj, {N, C}),
                            .weight = f32(p + w.ln2_w, {C}), .bias = f32(p + w.ln2_b, {C})});
    k.run(ops::LinearGelu{.pre = act(h.fch, {N, 4 * C}), .out = act(h.fch_gelu, {N, 4 * C}),
                          .inp = act(h.ln2, {N, C}), .weight = weight(w.fc_w, 4 * C, C),
                          .bias = f32(p + w.fc_b, {4 * C})});
    k.run(ops::Linear{.out = act(h.fc_proj, {N, C}), .inp = act(h.fch_gelu, {N, 4 * C}),
                      .weight = weight(w.fc_proj_w, C, 4 * C), .bias = f32(p + w.fc_proj_b, {C})});
    const bool last = l + 1 == L;
    const Activations::Layer* next = last ? nullptr : &a.layers[l + 1];
    const size_t next_w = last ? layout_.lnf_w : layout_.layers[l + 1].ln1_w;
    const size_t next_b = last ? layout_.lnf_b : layout_.layers[l + 1].ln1_b;
    k.run(ops::AddLayerNorm{.residual = act(h.residual3, {N, C}),
                            .out = act(last ? a.lnf : next->ln1, {N, C}),
                            .mean = f32(last ? a.lnf_mean : next->ln1_mean, {N}),
                            .rstd = f32(last ? a.lnf_rstd : next->ln1_rstd, {N}),
                            .a = act(h.residual2, {N, C}), .b = act(h.fc_proj, {N, C}),
                            .weight = f32(p + next_w, {C}), .bias = f32(p + next_b, {C})});
    x = h.residual3;
  }
  k.run(ops::Linear{.out = act(a.logits, {N, V}), .inp = act(a.lnf, {N, C}),
                    .weight = weight(layout_.wte, V, C)});
  last_B_ = B;
  last_T_ = T;
  last_has_targets_ = targets != nullptr;
  logits_valid_ = true;
  if (targets) {
    k.run(ops::CrossEntropy{.losses = f32(a.losses, {N}), .logits = act(a.logits, {N, V}),
                            .targets = i32(a.targets, {N})});
  }
}

std::vector<float> Gpt::logits_to_host() const {
  require(acts_ != nullptr && logits_valid_, "no logits: run a forward pass first");
  const int64_t rows = static_cast<int64_t>(last_B_) * last_T_;
  return backend::to_host_f32(backend_, act(acts_->logits, {rows, config_.vocab_size}));
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
  const int64_t N = i64(BT);
  // Activation gradients are stored in the backend's activation type (bf16 on mixed-precision
  // devices), so a buffer of n elements holds n * activation_bytes() bytes.
  const size_t act_bytes = dtype_bytes(k.precision().activations);
  auto zero = [&](float* ptr, size_t elements) { k.fill_zero(ptr, elements * act_bytes); };
  auto linear_backward = [&](float* dinp, size_t w_off, size_t b_off, const float* dout,
                             const float* inp, int64_t in, int64_t out, bool has_bias) {
    k.run(ops::LinearBackward{.dinp = act(dinp, {N, in}), .dweight = f32(g + w_off, {out, in}),
                              .dbias = has_bias ? f32(g + b_off, {out}) : Tensor{},
                              .dout = act(dout, {N, out}), .inp = act(inp, {N, in}),
                              .weight = weight(w_off, out, in)});
  };
  auto layernorm_backward = [&](float* dinp, size_t w_off, size_t b_off, const float* dout,
                                const float* inp, const float* mean, const float* rstd) {
    k.run(ops::LayerNormBackward{.dinp = act(dinp, {N, C}), .dweight = f32(g + w_off, {C}),
                                 .dbias = f32(g + b_off, {C}), .dout = act(dout, {N, C}),
                                 .inp = act(inp, {N, C}), .weight = f32(p + w_off, {C}),
                                 .mean = f32(mean, {N}), .rstd = f32(rstd, {N})});
  };

  // Loss = mean over BT positions, so each position's loss has weight loss_scale / BT. The logits
  // buffer becomes dlogits in place: the forward values are not needed after this.
  const Tensor logits = act(a.logits, {N, V});
  k.run(ops::CrossEntropyBackward{.dlogits = logits, .logits = logits,
                                  .targets = i32(a.targets, {N}),
                                  .dloss = loss_scale / static_cast<float>(BT)});
  logits_valid_ = false;
  zero(s.d_lnf, BT * C);
  linear_backward(s.d_lnf, layout_.wte, 0, a.logits, a.lnf, C, V, false);

  const float* last_x = config_.num_layers > 0 ? a.layers.back().residual3 : a.encoded;
  zero(s.d_residual, BT * C);
  layernorm_backward(s.d_residual, layout_.lnf_w, layout_.lnf_b, s.d_lnf, last_x, a.lnf_mean,
                     a.lnf_rstd);

  const AttentionSpec spec = attention_spec(config_);
  const int64_t record = i64(k.attention_record_floats(spec, B, T));
  // d_residual carries the gradient of the residual stream; each block adds its branches to it.
  for (int l = config_.num_layers - 1; l >= 0; --l) {
    const LayerOffsets& w = layout_.layers[l];
    const Activations::Layer& h = a.layers[l];
    const float* x = l == 0 ? a.encoded : a.layers[l - 1].residual3;

    zero(s.d_fch_gelu, BT * 4 * C);
    linear_backward(s.d_fch_gelu, w.fc_proj_w, w.fc_proj_b, s.d_residual, h.fch_gelu, 4 * C, C,
                    true);
    zero(s.d_fch, BT * 4 * C);
    k.run(ops::GeluBackward{.dinp = act(s.d_fch, {N, 4 * C}), .inp = act(h.fch, {N, 4 * C}),
                            .dout = act(s.d_fch_gelu, {N, 4 * C})});
    zero(s.d_ln, BT * C);
    linear_backward(s.d_ln, w.fc_w, w.fc_b, s.d_fch, h.ln2, C, 4 * C, true);
    layernorm_backward(s.d_residual, w.ln2_w, w.ln2_b, s.d_ln, h.residual2, h.ln2_mean,
                       h.ln2_rstd);

    zero(s.d_atty, BT * C);
    linear_backward(s.d_atty, w.attn_proj_w, w.attn_proj_b, s.d_residual, h.atty, C, C, true);
    zero(s.d_qkv, BT * 3 * C);
    const QkvViews views = qkv_views(act(h.qkv, {N, 3 * C}), C, NH);
    const QkvViews grads = qkv_views(act(s.d_qkv, {N, 3 * C}), C, NH);
    k.run(ops::AttentionBackward{
        .dq = grads.q, .dk = grads.k, .dv = grads.v,
        .scratch = f32(s.d_att, {i64(k.attention_scratch_floats(spec, B, T))}),
        .dout = act(s.d_atty, {N, C}), .out = act(h.atty, {N, C}), .record = f32(h.att, {record}),
        .q = views.q, .k = views.k, .v = views.v, .batch = B, .seq = T, .spec = spec});
    zero(s.d_ln, BT * C);
    linear_backward(s.d_ln, w.qkv_w, w.qkv_b, s.d_qkv, h.ln1, C, 3 * C, true);
    layernorm_backward(s.d_residual, w.ln1_w, w.ln1_b, s.d_ln, x, h.ln1_mean, h.ln1_rstd);
  }
  k.run(ops::EmbeddingBackward{.dtable = f32(g + layout_.wte, {V, C}),
                               .dposition_table = f32(g + layout_.wpe, {config_.max_seq_len, C}),
                               .dout = act(s.d_residual, {N, C}), .ids = i32(a.tokens, {N}),
                               .position_ids = i32(a.positions, {N})});
}

float Gpt::gradient_norm() const {
  DeviceBuffer total(backend_, sizeof(double) / sizeof(float));
  const double* sum = reinterpret_cast<const double*>(total.get());
  backend_.run(ops::SumOfSquares{.total = f64(sum), .x = f32(grads_.get(), {i64(layout_.total())})});
  double host = 0;
  backend_.copy_to_host(&host, sum, sizeof(double));
  return backend::global_norm(host);
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
  const DType copy_dtype = backend_.precision().matmul_weights;
  auto run = [&](size_t begin, size_t end, float weight_decay) {
    update.weight_decay = weight_decay;
    const int64_t n = i64(end - begin);
    Tensor copy;
    if (weight_copy_.get()) {
      copy = Tensor::dense(reinterpret_cast<uint16_t*>(weight_copy_.get()) + begin, copy_dtype, {n});
    }
    backend_.run(ops::AdamW{.params = f32(params_.get() + begin, {n}),
                            .grads = f32(grads_.get() + begin, {n}),
                            .m = f32(adam_m_.get() + begin, {n}), .v = f32(adam_v_.get() + begin, {n}),
                            .grad_sum_of_squares = grad_sum_of_squares ? f64(grad_sum_of_squares) : Tensor{},
                            .params_copy = copy, .step = update, .clip = clip});
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
  backend_.run(ops::AccumulateSum{.total = f64(stats + kStepLoss), .x = f32(acts_->losses, {i64(BT)}),
                                  .scale = static_cast<double>(loss_scale) / static_cast<double>(BT)});
  backward(loss_scale);
}

Gpt::StepResult Gpt::finish_step(const AdamWConfig& adamw, float learning_rate, int step,
                                 float clip) {
  require(step_stats_.get() != nullptr, "finish_step needs begin_step first");
  double* stats = reinterpret_cast<double*>(step_stats_.get());
  backend_.run(ops::SumOfSquares{.total = f64(stats + kStepGradSumOfSquares),
                                 .x = f32(grads_.get(), {i64(layout_.total())})});
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
               V = config_.vocab_size, act = dtype_bytes(backend_.precision().activations);
  k_cache_ = DeviceBuffer();
  v_cache_ = DeviceBuffer();
  const size_t cache_floats = (L * B * maxT * C * act + sizeof(float) - 1) / sizeof(float);
  k_cache_ = DeviceBuffer(backend_, cache_floats);
  v_cache_ = DeviceBuffer(backend_, cache_floats);
  decode_acts_ = DeviceBuffer(backend_, DecodePlan(B, C, V, act).plan.floats());
  decode_tokens_ = DeviceBuffer(backend_, 2 * B);  // tokens, then their positions
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
  const size_t act_bytes = dtype_bytes(k.precision().activations);
  const DecodePlan plan(B, C, V, act_bytes);
  float* base = decode_acts_.get();
  auto at = [base](size_t offset) { return BufferPlan::at(base, offset); };
  float *x = at(plan.x), *ln = at(plan.ln), *attn_proj = at(plan.attn_proj), *atty = at(plan.atty),
        *residual = at(plan.residual), *fc_proj = at(plan.fc_proj), *qkv = at(plan.qkv),
        *fch = at(plan.fch), *fch_gelu = at(plan.fch_gelu), *logits = at(plan.logits),
        *mean = at(plan.mean), *rstd = at(plan.rstd);
  int32_t* device_tokens = reinterpret_cast<int32_t*>(decode_tokens_.get());
  k.copy_to_device(device_tokens, tokens, B * sizeof(int32_t));

  // Each sequence has one position here, so the embedding is wte[token] + wpe[pos].
  const int64_t Bn = B;
  const std::vector<int32_t> positions(static_cast<size_t>(B), pos);
  int32_t* device_positions = device_tokens + B;
  k.copy_to_device(device_positions, positions.data(), B * sizeof(int32_t));
  k.run(ops::Embedding{.out = act(x, {Bn, C}), .ids = i32(device_tokens, {Bn}),
                       .table = f32(p + layout_.wte, {V, C}), .position_ids = i32(device_positions, {Bn}),
                       .position_table = f32(p + layout_.wpe, {maxT, C})});
  const AttentionSpec spec = attention_spec(config_);
  const int hs = C / NH;
  auto layernorm = [&](float* out, const float* inp, size_t w_off, size_t b_off) {
    k.run(ops::LayerNorm{.out = act(out, {Bn, C}), .mean = f32(mean, {Bn}), .rstd = f32(rstd, {Bn}),
                         .inp = act(inp, {Bn, C}), .weight = f32(p + w_off, {C}),
                         .bias = f32(p + b_off, {C})});
  };
  const size_t layer_cache_bytes = static_cast<size_t>(B) * maxT * C * act_bytes;
  for (int l = 0; l < config_.num_layers; ++l) {
    const LayerOffsets& w = layout_.layers[l];
    layernorm(ln, x, w.ln1_w, w.ln1_b);
    const Tensor qkv_t = act(qkv, {Bn, 3 * C});
    k.run(ops::Linear{.out = qkv_t, .inp = act(ln, {Bn, C}), .weight = weight(w.qkv_w, 3 * C, C),
                      .bias = f32(p + w.qkv_b, {3 * C})});
    const QkvViews views = qkv_views(qkv_t, C, NH);
    k.run(ops::AttentionDecode{
        .out = act(atty, {Bn, C}), .q = views.q, .k = views.k, .v = views.v,
        .k_cache = act(BufferPlan::at(k_cache_.get(), l * layer_cache_bytes), {Bn, NH, maxT, hs}),
        .v_cache = act(BufferPlan::at(v_cache_.get(), l * layer_cache_bytes), {Bn, NH, maxT, hs}),
        .pos = pos, .spec = spec});
    k.run(ops::Linear{.out = act(attn_proj, {Bn, C}), .inp = act(atty, {Bn, C}),
                      .weight = weight(w.attn_proj_w, C, C), .bias = f32(p + w.attn_proj_b, {C})});
    k.run(ops::AddLayerNorm{.residual = act(residual, {Bn, C}), .out = act(ln, {Bn, C}),
                            .mean = f32(mean, {Bn}), .rstd = f32(rstd, {Bn}), .a = act(x, {Bn, C}),
                            .b = act(attn_proj, {Bn, C}), .weight = f32(p + w.ln2_w, {C}),
                            .bias = f32(p + w.ln2_b, {C})});
    k.run(ops::LinearGelu{.pre = act(fch, {Bn, 4 * C}), .out = act(fch_gelu, {Bn, 4 * C}),
                          .inp = act(ln, {Bn, C}), .weight = weight(w.fc_w, 4 * C, C),
                          .bias = f32(p + w.fc_b, {4 * C})});
    k.run(ops::Linear{.out = act(fc_proj, {Bn, C}), .inp = act(fch_gelu, {Bn, 4 * C}),
                      .weight = weight(w.fc_proj_w, C, 4 * C), .bias = f32(p + w.fc_proj_b, {C})});
    k.run(ops::Add{.out = act(x, {Bn, C}), .a = act(residual, {Bn, C}), .b = act(fc_proj, {Bn, C})});
  }
  layernorm(ln, x, layout_.lnf_w, layout_.lnf_b);
  k.run(ops::Linear{.out = act(logits, {Bn, V}), .inp = act(ln, {Bn, C}),
                    .weight = weight(layout_.wte, V, C)});
  std::vector<float> host = backend::to_host_f32(k, act(logits, {Bn, V}));
  decode_next_pos_ = pos + 1;
  return host;
}

}  // namespace switchyard::model
