#include "model/gpt_oss.h"

#include <fmt/format.h>

#include "core/error.h"
#include "model/rope.h"

namespace switchyard::model {

namespace ops = backend::ops;

namespace {

std::string layer_name(int l, const char* rest) { return fmt::format("model.layers.{}.{}", l, rest); }

RopeConfig rope_config(const ModelConfig& c) {
  return {.head_dim = c.head_size(), .theta = c.rope_theta, .yarn_factor = c.rope_yarn_factor,
          .original_context = c.rope_original_context, .beta_fast = c.rope_beta_fast,
          .beta_slow = c.rope_beta_slow, .truncate = c.rope_truncate};
}

}  // namespace

ParameterLayout gpt_oss_layout(const ModelConfig& config) {
  require(config.is_gpt_oss(), "gpt-oss layout for a '{}' config", config.family);
  config.validate();
  const int64_t C = config.channels, V = config.vocab_size, H = config.num_heads;
  const int64_t KV = config.kv_heads(), D = config.head_size(), E = config.num_experts;
  const int64_t I = config.intermediate;
  const int L = config.num_layers;
  const float std = 0.02f;
  ParameterLayout layout;
  // Decayed matrices first.
  layout.add("model.embed_tokens.weight", {V, C}, false, true, Init::kNormal, std);
  for (int l = 0; l < L; ++l) {
    layout.begin_layer(l);
    auto add = [&](const char* name, std::vector<int64_t> shape, bool transposed = false) {
      layout.add(layer_name(l, name), std::move(shape), transposed, true, Init::kNormal, std);
    };
    add("self_attn.q_proj.weight", {H * D, C});
    layout.add_adjacent(layer_name(l, "self_attn.k_proj.weight"), {KV * D, C}, false, true,
                        Init::kNormal, std);
    layout.add_adjacent(layer_name(l, "self_attn.v_proj.weight"), {KV * D, C}, false, true,
                        Init::kNormal, std);
    add("self_attn.o_proj.weight", {C, H * D});
    add("mlp.router.weight", {E, C});
    add("mlp.experts.gate_up_proj", {E, 2 * I, C}, true);
    add("mlp.experts.down_proj", {E, C, I}, true);
  }
  layout.end_layers();
  layout.add("lm_head.weight", {V, C}, false, true, Init::kNormal, std);
  for (int l = 0; l < L; ++l) {
    layout.begin_layer(l);
    auto add = [&](const char* name, std::vector<int64_t> shape, Init init) {
      layout.add(layer_name(l, name), std::move(shape), false, false, init, std);
    };
    add("input_layernorm.weight", {C}, Init::kOne);
    add("self_attn.q_proj.bias", {H * D}, Init::kZero);
    layout.add_adjacent(layer_name(l, "self_attn.k_proj.bias"), {KV * D}, false, false, Init::kZero);
    layout.add_adjacent(layer_name(l, "self_attn.v_proj.bias"), {KV * D}, false, false, Init::kZero);
    add("self_attn.o_proj.bias", {C}, Init::kZero);
    add("self_attn.sinks", {H}, Init::kNormal);
    add("post_attention_layernorm.weight", {C}, Init::kOne);
    add("mlp.router.bias", {E}, Init::kZero);
    add("mlp.experts.gate_up_proj_bias", {E, 2 * I}, Init::kZero);
    add("mlp.experts.down_proj_bias", {E, C}, Init::kZero);
  }
  layout.end_layers();
  layout.add("model.norm.weight", {C}, false, false, Init::kOne);
  layout.set_read("model.embed_tokens.weight", ReadPerToken::kOneRow);
  for (int l = 0; l < L; ++l) {
    for (const char* name : {"mlp.experts.gate_up_proj", "mlp.experts.down_proj",
                             "mlp.experts.gate_up_proj_bias", "mlp.experts.down_proj_bias"}) {
      layout.set_read(layer_name(l, name), ReadPerToken::kChosenExperts);
    }
    // Published as MXFP4: [E, out, in], each output's row of inputs in blocks of 32.
    layout.mark_published_mxfp4(layer_name(l, "mlp.experts.gate_up_proj"));
    layout.mark_published_mxfp4(layer_name(l, "mlp.experts.down_proj"));
  }
  return layout;
}

GptOss::GptOss(backend::Backend& backend, const ModelConfig& config, const WeightSource* frozen)
    : Model(backend, config, gpt_oss_layout(config), frozen) {
  upload_rope_tables();
  build_layers();
}

void GptOss::upload_rope_tables() {
  const RopeTables tables = rope_tables(rope_config(config_), config_.max_seq_len);
  const size_t n = tables.cos.size();
  rope_buffer_ = DeviceBuffer(backend(), 2 * n);
  backend().copy_to_device(rope_buffer_.get(), tables.cos.data(), n * sizeof(float));
  backend().copy_to_device(rope_buffer_.get() + n, tables.sin.data(), n * sizeof(float));
}

void GptOss::build_layers() {
  const ModelConfig& c = config_;
  const int64_t C = c.channels, V = c.vocab_size, H = c.num_heads, KV = c.kv_heads();
  const int64_t D = c.head_size(), E = c.num_experts, I = c.intermediate;
  auto p = [&](const std::string& name, std::initializer_list<int64_t> shape) {
    return param(layout().find(name)->offset, shape);
  };
  auto lp = [&](int l, const char* name, std::initializer_list<int64_t> shape) {
    return p(layer_name(l, name), shape);
  };
  const int64_t positions = c.max_seq_len, pairs = D / 2;
  const blocks::RotaryTables rope{
      .cos = Tensor::dense(rope_buffer_.get(), DType::kF32, {positions, pairs}),
      .sin = Tensor::dense(rope_buffer_.get() + positions * pairs, DType::kF32, {positions, pairs})};
  embedding_ = {.tokens = p("model.embed_tokens.weight", {V, C}), .positions = {}};  // RoPE instead
  const int64_t qkv = (H + 2 * KV) * D;
  for (int l = 0; l < c.num_layers; ++l) {
    Layer layer;
    layer.norm1 = {.weight = lp(l, "input_layernorm.weight", {C}), .epsilon = c.norm_epsilon};
    layer.norm2 = {.weight = lp(l, "post_attention_layernorm.weight", {C}),
                   .epsilon = c.norm_epsilon};
    layer.attention = {
        .qkv = {.weight = lp(l, "self_attn.q_proj.weight", {qkv, C}),
                .bias = lp(l, "self_attn.q_proj.bias", {qkv})},
        .proj = {.weight = lp(l, "self_attn.o_proj.weight", {C, H * D}),
                 .bias = lp(l, "self_attn.o_proj.bias", {C})},
        .sinks = lp(l, "self_attn.sinks", {H}),
        .rope = rope,
        .spec = {.heads = c.num_heads, .kv_heads = c.kv_heads(), .head_dim = c.head_size(),
                 .window = c.layer_window(l)},
        .layer = l};
    layer.moe = {.router = {.weight = lp(l, "mlp.router.weight", {E, C}),
                            .bias = lp(l, "mlp.router.bias", {E})},
                 .gate_up = lp(l, "mlp.experts.gate_up_proj", {E, 2 * I, C}),
                 .gate_up_bias = lp(l, "mlp.experts.gate_up_proj_bias", {E, 2 * I}),
                 .down = lp(l, "mlp.experts.down_proj", {E, C, I}),
                 .down_bias = lp(l, "mlp.experts.down_proj_bias", {E, C}),
                 .experts = c.num_experts,
                 .top_k = c.experts_per_token,
                 .intermediate = c.intermediate,
                 .alpha = c.swiglu_alpha,
                 .limit = c.swiglu_limit};
    layers_.push_back(layer);
  }
  final_norm_ = {.weight = p("model.norm.weight", {C}), .epsilon = c.norm_epsilon};
  head_ = {.weight = p("lm_head.weight", {V, C})};
}

void GptOss::cut_layer(LayerActivations& l, const ActivationPlan& need, Arena& arena) const {
  const int64_t N = need.rows, cap = store_.plan().rows;
  const DType a = backend().precision().activations, f = DType::kF32, i = DType::kI32;
  const int64_t C = config_.channels, E = config_.num_experts, K = config_.experts_per_token;
  const int64_t I = config_.intermediate, A = N * K, capA = cap * K;
  const blocks::SelfAttention& att = layers_.front().attention;
  const int64_t qkv = att.qkv_width(), width = att.heads_width();
  l.norm1 = arena.take(a, cap * C, {N, C});
  l.rstd1 = arena.take(f, cap, {N});
  l.attention.qkv = arena.take(a, cap * qkv, {N, qkv});
  l.attention.heads = arena.take(a, cap * width, {N, width});
  const int64_t record = store_.plan().record;
  l.attention.record = record > 0 ? arena.take(f, record, {need.record}) : Tensor{};
  l.attn_out = arena.take(a, cap * C, {N, C});
  l.residual2 = arena.take(a, cap * C, {N, C});
  l.norm2 = arena.take(a, cap * C, {N, C});
  l.rstd2 = arena.take(f, cap, {N});
  blocks::MoeActivations& m = l.moe;
  m.router_logits = arena.take(a, cap * E, {N, E});
  m.expert_ids = arena.take(i, capA, {N, K});
  m.weights = arena.take(f, capA, {N, K});
  m.order = arena.take(i, capA, {A});
  m.rows = arena.take(i, capA, {A});
  m.position = arena.take(i, capA, {A});
  m.offsets = arena.take(i, E + 1, {E + 1});
  m.gathered = arena.take(a, capA * C, {A, C});
  m.gate_up = arena.take(a, capA * 2 * I, {A, 2 * I});
  m.act = arena.take(a, capA * I, {A, I});
  m.expert_out = arena.take(a, capA * C, {A, C});
  l.moe_out = arena.take(a, cap * C, {N, C});
  l.residual3 = arena.take(a, cap * C, {N, C});
}

void GptOss::cut_views(const ActivationPlan& need, Arena& arena, Arena& scratch) {
  const int64_t C = config_.channels, V = config_.vocab_size, N = need.rows, R = need.logits;
  const int64_t E = config_.num_experts, K = config_.experts_per_token, I = config_.intermediate;
  const ActivationPlan& planned = store_.plan();
  const int64_t cap = planned.rows, cap_logits = planned.logits, A = N * K, capA = cap * K;
  const DType a = backend().precision().activations, f = DType::kF32;
  const blocks::SelfAttention& att = layers_.front().attention;
  const int64_t qkv = att.qkv_width(), width = att.heads_width();

  encoded_ = arena.take(a, cap * C, {N, C});
  acts_.resize(store_.plan().per_layer ? config_.num_layers : 1);
  for (LayerActivations& l : acts_) cut_layer(l, need, arena);
  final_ = arena.take(a, cap * C, {N, C});
  final_rstd_ = arena.take(f, cap, {N});
  head_acts_.gathered = arena.take(a, cap_logits * C, {R, C});
  head_acts_.logits = arena.take(a, cap_logits * V, {R, V});
  head_acts_.losses = arena.take(f, cap, {N});
  balance_totals_ = arena.take(DType::kF64, 2 * E, {2, E});

  if (!store_.plan().per_layer) return;  // only training runs the backward pass
  d_residual_ = scratch.take(a, cap * C, {N, C});
  d_norm_ = scratch.take(a, cap * C, {N, C});
  d_final_ = scratch.take(a, cap * C, {N, C});
  attention_scratch_.dqkv = scratch.take(a, cap * qkv, {N, qkv});
  attention_scratch_.dheads = scratch.take(a, cap * width, {N, width});
  attention_scratch_.attention =
      scratch.take(f, store_.plan().attention_scratch, {need.attention_scratch});
  moe_scratch_.drouter_logits = scratch.take(a, cap * E, {N, E});
  moe_scratch_.dweights = scratch.take(f, capA, {N, K});
  moe_scratch_.dexpert_out = scratch.take(a, capA * C, {A, C});
  moe_scratch_.dact = scratch.take(a, capA * I, {A, I});
  moe_scratch_.dgate_up = scratch.take(a, capA * 2 * I, {A, 2 * I});
  moe_scratch_.dgathered = scratch.take(a, capA * C, {A, C});
}

void GptOss::run_layer(const blocks::BlockContext& c, int l, const LayerActivations& h,
                       const Tensor& x, bool with_targets) {
  const Layer& layer = layers_[l];
  blocks::rmsnorm_forward(c, layer.norm1, h.norm1, h.rstd1, x);
  blocks::self_attention_forward(c, layer.attention, h.attn_out, h.norm1, h.attention);
  c.backend.run(ops::Add{.out = h.residual2, .a = x, .b = h.attn_out});
  blocks::rmsnorm_forward(c, layer.norm2, h.norm2, h.rstd2, h.residual2);
  blocks::moe_forward(c, layer.moe, h.moe_out, h.norm2, h.moe);
  if (with_targets) blocks::moe_load_stats(c, h.moe, balance_totals_);
  c.backend.run(ops::Add{.out = h.residual3, .a = h.residual2, .b = h.moe_out});
}

void GptOss::forward_layers(const blocks::BlockContext& c, bool for_training) {
  const BatchOnDevice& batch = c.batch;
  const ActivationPlan need =
      ActivationPlan::for_batch(backend(), batch, layers_.front().attention.spec, for_training);
  store_.prepare(backend(), need,
                 [this](const ActivationPlan& n, Arena& a, Arena& s) { cut_views(n, a, s); });

  const bool with_targets = !batch.targets.empty();
  if (with_targets) c.zero(balance_totals_);
  balance_valid_ = with_targets;
  blocks::embedding_forward(c, embedding_, encoded_);
  Tensor x = encoded_;  // the residual stream entering each block
  for (int l = 0; l < config_.num_layers; ++l) {
    const LayerActivations& h = acts_[for_training ? l : 0];
    run_layer(c, l, h, x, with_targets);
    x = h.residual3;
  }
  blocks::rmsnorm_forward(c, final_norm_, final_, final_rstd_, x);
  blocks::lm_head_forward(c, head_, final_, head_acts_);
}

void GptOss::backward_layers(const blocks::BlockContext& c, float loss_scale) {
  blocks::lm_head_backward(c, head_, d_final_, final_, head_acts_, loss_scale);
  const int L = config_.num_layers;
  c.zero(d_residual_);
  blocks::rmsnorm_backward(c, final_norm_, d_residual_, d_final_, acts_[L - 1].residual3,
                           final_rstd_);
  // The load-balancing loss is coefficient * E / R^2 * sum_e count_e * prob_sum_e over R rows of
  // all layers; its gradient reaches each layer's router logits.
  const double R = static_cast<double>(c.batch.rows) * L;
  const blocks::LoadBalancing balance{
      .totals = balance_totals_,
      .scale = static_cast<float>(static_cast<double>(loss_scale) * config_.router_aux_loss_coef *
                                  config_.num_experts / (R * R))};
  for (int l = L - 1; l >= 0; --l) {
    const Layer& layer = layers_[l];
    const LayerActivations& h = acts_[l];
    const Tensor& x = l == 0 ? encoded_ : acts_[l - 1].residual3;
    blocks::moe_backward(c, layer.moe, d_norm_, d_residual_, h.norm2, h.moe, moe_scratch_, balance);
    blocks::rmsnorm_backward(c, layer.norm2, d_residual_, d_norm_, h.residual2, h.rstd2);
    blocks::self_attention_backward(c, layer.attention, d_norm_, d_residual_, h.norm1,
                                    h.attention, attention_scratch_);
    blocks::rmsnorm_backward(c, layer.norm1, d_residual_, d_norm_, x, h.rstd1);
    layer_gradients_done(l);
  }
  blocks::embedding_backward(c, embedding_, d_residual_);
}

float GptOss::auxiliary_loss() const {
  require(balance_valid_, "no load-balancing loss: run a forward pass with targets first");
  const int64_t E = config_.num_experts;
  std::vector<double> totals(static_cast<size_t>(2 * E));
  backend().copy_to_host(totals.data(), balance_totals_.data, totals.size() * sizeof(double));
  const double R = static_cast<double>(batch().rows) * config_.num_layers;
  double sum = 0;
  for (int64_t e = 0; e < E; ++e) sum += totals[static_cast<size_t>(e)] * totals[static_cast<size_t>(E + e)];
  return static_cast<float>(static_cast<double>(E) * sum / (R * R));
}

}  // namespace switchyard::model
