#include "model/gpt2.h"

#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "model/arena.h"

namespace switchyard::model {

namespace ops = backend::ops;

ParameterLayout gpt2_layout(const ModelConfig& config) {
  const int64_t C = config.channels, V = config.vocab_size, maxT = config.max_seq_len;
  const int L = config.num_layers;
  const float std = 0.02f, residual_std = 0.02f / std::sqrt(2.0f * static_cast<float>(L));
  auto name = [](int l, const char* rest) { return fmt::format("h.{}.{}", l, rest); };
  ParameterLayout layout;
  // Decayed matrices first.
  layout.add("wte.weight", {V, C}, false, true, Init::kNormal, std);
  layout.add("wpe.weight", {maxT, C}, false, true, Init::kNormal, std);
  for (int l = 0; l < L; ++l) {
    layout.begin_layer(l);
    layout.add(name(l, "attn.c_attn.weight"), {3 * C, C}, true, true, Init::kNormal, std);
    layout.add(name(l, "attn.c_proj.weight"), {C, C}, true, true, Init::kNormal, residual_std);
    layout.add(name(l, "mlp.c_fc.weight"), {4 * C, C}, true, true, Init::kNormal, std);
    layout.add(name(l, "mlp.c_proj.weight"), {C, 4 * C}, true, true, Init::kNormal, residual_std);
  }
  layout.end_layers();
  for (int l = 0; l < L; ++l) {
    layout.begin_layer(l);
    layout.add(name(l, "ln_1.weight"), {C}, false, false, Init::kOne);
    layout.add(name(l, "ln_1.bias"), {C}, false, false, Init::kZero);
    layout.add(name(l, "attn.c_attn.bias"), {3 * C}, false, false, Init::kZero);
    layout.add(name(l, "attn.c_proj.bias"), {C}, false, false, Init::kZero);
    layout.add(name(l, "ln_2.weight"), {C}, false, false, Init::kOne);
    layout.add(name(l, "ln_2.bias"), {C}, false, false, Init::kZero);
    layout.add(name(l, "mlp.c_fc.bias"), {4 * C}, false, false, Init::kZero);
    layout.add(name(l, "mlp.c_proj.bias"), {C}, false, false, Init::kZero);
  }
  layout.end_layers();
  layout.add("ln_f.weight", {C}, false, false, Init::kOne);
  layout.add("ln_f.bias", {C}, false, false, Init::kZero);
  layout.set_read("wpe.weight", ReadPerToken::kOneRow);  // wte is also the head: read whole
  return layout;
}

Gpt2::Gpt2(backend::Backend& backend, const ModelConfig& config, const WeightSource* frozen)
    : Model(backend, config, gpt2_layout(config), frozen) {
  const int64_t C = config.channels, V = config.vocab_size, maxT = config.max_seq_len;
  auto p = [&](const std::string& name, std::initializer_list<int64_t> shape) {
    return param(layout().find(name)->offset, shape);
  };
  auto h = [](int l, const char* rest) { return fmt::format("h.{}.{}", l, rest); };
  embedding_ = {.tokens = p("wte.weight", {V, C}), .positions = p("wpe.weight", {maxT, C})};
  const ops::AttentionSpec spec{.heads = config.num_heads, .kv_heads = config.kv_heads(),
                                .head_dim = config.head_size()};
  for (int l = 0; l < config.num_layers; ++l) {
    Layer layer;
    layer.ln1 = {.weight = p(h(l, "ln_1.weight"), {C}), .bias = p(h(l, "ln_1.bias"), {C})};
    layer.ln2 = {.weight = p(h(l, "ln_2.weight"), {C}), .bias = p(h(l, "ln_2.bias"), {C})};
    layer.attention = {
        .qkv = {.weight = p(h(l, "attn.c_attn.weight"), {3 * C, C}),
                .bias = p(h(l, "attn.c_attn.bias"), {3 * C})},
        .proj = {.weight = p(h(l, "attn.c_proj.weight"), {C, C}),
                 .bias = p(h(l, "attn.c_proj.bias"), {C})},
        .sinks = {},  // GPT-2 has neither sinks nor rotary embeddings
        .rope = {},
        .spec = spec,
        .layer = l};
    layer.mlp = {.fc = {.weight = p(h(l, "mlp.c_fc.weight"), {4 * C, C}),
                        .bias = p(h(l, "mlp.c_fc.bias"), {4 * C})},
                 .proj = {.weight = p(h(l, "mlp.c_proj.weight"), {C, 4 * C}),
                          .bias = p(h(l, "mlp.c_proj.bias"), {C})}};
    layers_.push_back(layer);
  }
  final_norm_ = {.weight = p("ln_f.weight", {C}), .bias = p("ln_f.bias", {C})};
  head_ = {.weight = embedding_.tokens};  // tied
}

void Gpt2::cut_views(const ActivationPlan& need, Arena& arena, Arena& scratch) {
  const int64_t C = config_.channels, V = config_.vocab_size, N = need.rows, R = need.logits;
  const ActivationPlan& planned = store_.plan();
  const int64_t cap = planned.rows, cap_logits = planned.logits;
  const DType a = backend().precision().activations, f = DType::kF32;
  const ops::AttentionSpec& spec = layers_.front().attention.spec;
  const int64_t qkv = layers_.front().attention.qkv_width(), width = spec.heads * spec.head_dim;
  const int sets = planned.per_layer ? config_.num_layers : 1;

  encoded_ = arena.take(a, cap * C, {N, C});
  acts_.resize(sets);
  for (LayerActivations& l : acts_) {
    l.ln1 = arena.take(a, cap * C, {N, C});
    l.ln1_stats = {arena.take(f, cap, {N}), arena.take(f, cap, {N})};
    l.attention.qkv = arena.take(a, cap * qkv, {N, qkv});
    l.attention.heads = arena.take(a, cap * width, {N, width});
    l.attention.record = planned.record > 0 ? arena.take(f, planned.record, {need.record}) : Tensor{};
    l.attn_out = arena.take(a, cap * C, {N, C});
    l.residual2 = arena.take(a, cap * C, {N, C});
    l.ln2 = arena.take(a, cap * C, {N, C});
    l.ln2_stats = {arena.take(f, cap, {N}), arena.take(f, cap, {N})};
    l.mlp.pre = arena.take(a, cap * 4 * C, {N, 4 * C});
    l.mlp.act = arena.take(a, cap * 4 * C, {N, 4 * C});
    l.mlp_out = arena.take(a, cap * C, {N, C});
    l.residual3 = arena.take(a, cap * C, {N, C});
  }
  lnf_ = arena.take(a, cap * C, {N, C});
  lnf_stats_ = {arena.take(f, cap, {N}), arena.take(f, cap, {N})};
  head_acts_.gathered = arena.take(a, cap_logits * C, {R, C});
  head_acts_.logits = arena.take(a, cap_logits * V, {R, V});
  head_acts_.losses = arena.take(f, cap, {N});

  if (!planned.per_layer) return;  // only training runs the backward pass
  d_residual_ = scratch.take(a, cap * C, {N, C});
  d_ln_ = scratch.take(a, cap * C, {N, C});
  d_lnf_ = scratch.take(a, cap * C, {N, C});
  attention_scratch_.dqkv = scratch.take(a, cap * qkv, {N, qkv});
  attention_scratch_.dheads = scratch.take(a, cap * width, {N, width});
  attention_scratch_.attention =
      scratch.take(f, planned.attention_scratch, {need.attention_scratch});
  mlp_scratch_.dact = scratch.take(a, cap * 4 * C, {N, 4 * C});
  mlp_scratch_.dpre = scratch.take(a, cap * 4 * C, {N, 4 * C});
}

void Gpt2::forward_layers(const blocks::BlockContext& c, bool for_training) {
  const BatchOnDevice& batch = c.batch;
  const ActivationPlan need =
      ActivationPlan::for_batch(backend(), batch, layers_.front().attention.spec, for_training);
  store_.prepare(backend(), need,
                 [this](const ActivationPlan& n, Arena& a, Arena& s) { cut_views(n, a, s); });

  blocks::embedding_forward(c, embedding_, encoded_);
  // Each residual add is fused with the LayerNorm that reads its result: the block's ln2, and the
  // next block's ln1 (or ln_f after the last block).
  const int L = config_.num_layers;
  blocks::layernorm_forward(c, layers_[0].ln1, acts_[0].ln1, acts_[0].ln1_stats, encoded_);
  Tensor x = encoded_;  // the residual stream entering each block
  for (int l = 0; l < L; ++l) {
    const Layer& layer = layers_[l];
    const LayerActivations& h = acts_[for_training ? l : 0];
    blocks::self_attention_forward(c, layer.attention, h.attn_out, h.ln1, h.attention);
    blocks::add_layernorm_forward(c, layer.ln2, h.residual2, h.ln2, h.ln2_stats, x, h.attn_out);
    blocks::dense_mlp_forward(c, layer.mlp, h.mlp_out, h.ln2, h.mlp);
    const bool last = l + 1 == L;
    const LayerActivations& next = acts_[for_training && !last ? l + 1 : 0];
    blocks::add_layernorm_forward(c, last ? final_norm_ : layers_[l + 1].ln1, h.residual3,
                                  last ? lnf_ : next.ln1, last ? lnf_stats_ : next.ln1_stats,
                                  h.residual2, h.mlp_out);
    x = h.residual3;
  }
  blocks::lm_head_forward(c, head_, lnf_, head_acts_);
}

void Gpt2::backward_layers(const blocks::BlockContext& c, float loss_scale) {
  blocks::lm_head_backward(c, head_, d_lnf_, lnf_, head_acts_, loss_scale);
  const int L = config_.num_layers;
  // d_residual carries the gradient of the residual stream; each block adds its branches to it.
  c.zero(d_residual_);
  blocks::layernorm_backward(c, final_norm_, d_residual_, d_lnf_, acts_[L - 1].residual3,
                             lnf_stats_);
  for (int l = L - 1; l >= 0; --l) {
    const Layer& layer = layers_[l];
    const LayerActivations& h = acts_[l];
    const Tensor& x = l == 0 ? encoded_ : acts_[l - 1].residual3;
    blocks::dense_mlp_backward(c, layer.mlp, d_ln_, d_residual_, h.ln2, h.mlp, mlp_scratch_);
    blocks::layernorm_backward(c, layer.ln2, d_residual_, d_ln_, h.residual2, h.ln2_stats);
    blocks::self_attention_backward(c, layer.attention, d_ln_, d_residual_, h.ln1, h.attention,
                                    attention_scratch_);
    blocks::layernorm_backward(c, layer.ln1, d_residual_, d_ln_, x, h.ln1_stats);
    layer_gradients_done(l);
  }
  blocks::embedding_backward(c, embedding_, d_residual_);
}

}  // namespace switchyard::model
