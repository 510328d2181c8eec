#include "model/blocks/attention.h"

#include "core/error.h"

namespace switchyard::model::blocks {

QkvViews split_qkv(const Tensor& qkv, const ops::AttentionSpec& spec) {
  const int64_t N = qkv.shape[0], hd = spec.head_dim, row = qkv.strides[0];
  auto view = [&](int64_t first_head, int64_t heads) {
    Tensor t = Tensor::dense(qkv.data, qkv.dtype, {N, heads, hd});
    t.strides[0] = row;
    t.data = static_cast<char*>(qkv.data) + first_head * hd * dtype_bytes(qkv.dtype);
    return t;
  };
  return {view(0, spec.heads), view(spec.heads, spec.kv_heads),
          view(spec.heads + spec.kv_heads, spec.kv_heads), view(0, spec.heads + spec.kv_heads)};
}

namespace {

void attend_over_windows(const BlockContext& c, const SelfAttention& a, const QkvViews& v,
                         const AttentionActivations& acts) {
  c.backend.run(ops::Attention{.out = acts.heads, .record = acts.record, .q = v.q, .k = v.k,
                               .v = v.v, .sinks = a.sinks.value, .batch = c.batch.windows,
                               .seq = c.batch.window_length, .spec = a.spec});
}

void attend_over_cache(const BlockContext& c, const SelfAttention& a, const QkvViews& v,
                       const AttentionActivations& acts) {
  KvCache& cache = *c.cache;
  const int group = cache.group_of_layer(a.layer);
  require(cache.config().groups[group].window == a.spec.window,
          "layer {}: the KV cache group's window {} differs from the layer's {}", a.layer,
          cache.config().groups[group].window, a.spec.window);
  const Tensor keys = cache.keys(a.layer), values = cache.values(a.layer);
  c.backend.run(ops::KvCacheWrite{.k_cache = keys, .v_cache = values, .k = v.k, .v = v.v,
                                  .slots = c.batch.slots[group]});
  c.backend.run(ops::PagedAttention{.out = acts.heads, .q = v.q, .k_cache = keys,
                                    .v_cache = values, .block_tables = c.batch.block_tables[group],
                                    .query_start = c.batch.query_start,
                                    .context_len = c.batch.context_len,
                                    .sinks = a.sinks.value, .max_query_len = c.batch.max_query,
                                    .max_context_len = c.batch.max_context, .spec = a.spec});
}

// Rotates q and k by their rows' positions (transpose: the backward pass on their gradients).
void rotate(const BlockContext& c, const SelfAttention& a, const QkvViews& v, bool transpose) {
  if (!a.rope.present()) return;
  c.backend.run(ops::Rope{.x = v.qk, .cos = a.rope.cos, .sin = a.rope.sin,
                          .positions = c.batch.positions, .transpose = transpose});
}

}  // namespace

void self_attention_forward(const BlockContext& c, const SelfAttention& a, const Tensor& out,
                            const Tensor& inp, const AttentionActivations& acts) {
  linear_forward(c, a.qkv, acts.qkv, inp);
  const QkvViews views = split_qkv(acts.qkv, a.spec);
  rotate(c, a, views, false);
  if (c.cache) {
    attend_over_cache(c, a, views, acts);
  } else {
    attend_over_windows(c, a, views, acts);
  }
  linear_forward(c, a.proj, out, acts.heads);
}

void self_attention_backward(const BlockContext& c, const SelfAttention& a, const Tensor& dinp,
                             const Tensor& dout, const Tensor& inp,
                             const AttentionActivations& acts, const AttentionScratch& scratch) {
  require(c.cache == nullptr, "the backward pass runs over training windows, not a KV cache");
  linear_backward(c, a.proj, scratch.dheads, dout, acts.heads, GradientWrite::kSet);
  c.zero(scratch.dqkv);
  const QkvViews views = split_qkv(acts.qkv, a.spec);
  const QkvViews grads = split_qkv(scratch.dqkv, a.spec);
  c.ready_to_add(a.sinks.grad);
  c.backend.run(ops::AttentionBackward{
      .dq = grads.q, .dk = grads.k, .dv = grads.v, .dsinks = a.sinks.grad,
      .scratch = scratch.attention, .dout = scratch.dheads, .out = acts.heads,
      .record = acts.record, .q = views.q, .k = views.k, .v = views.v, .sinks = a.sinks.value,
      .batch = c.batch.windows, .seq = c.batch.window_length, .spec = a.spec});
  rotate(c, a, grads, true);
  linear_backward(c, a.qkv, dinp, scratch.dqkv, inp, GradientWrite::kSet);
}

}  // namespace switchyard::model::blocks
