// Self-attention: a packed q|k|v projection, rotary embeddings of q and k (when the model has
// them), attention (with sinks and a window when the spec has them), the output projection.
//
// Over training windows the attention op runs on the batch's own rows; over a KV cache the new
// rows' keys and values are first written to the cache and the queries attend over each
// sequence's cached context (prefill chunks and decode steps alike).
#pragma once

#include "model/blocks/linear.h"

namespace switchyard::model::blocks {

// cos and sin of every position (rope.h's tables, on the device); empty without rotary embeddings.
struct RotaryTables {
  Tensor cos, sin;  // [positions, head_dim / 2] fp32
  bool present() const { return !cos.empty(); }
};

struct SelfAttention {
  Linear qkv;   // [(heads + 2 kv_heads) * head_dim, C]: q | k | v per row
  Linear proj;  // [C, heads * head_dim]
  ParamRef sinks;  // [heads]: one learned logit per query head; absent without sinks
  RotaryTables rope;
  ops::AttentionSpec spec;
  int layer = 0;  // the model layer, for its KV cache tensors

  int64_t qkv_width() const {
    return static_cast<int64_t>(spec.heads + 2 * spec.kv_heads) * spec.head_dim;
  }
  int64_t heads_width() const { return static_cast<int64_t>(spec.heads) * spec.head_dim; }
};

// What the forward pass keeps for the backward pass.
struct AttentionActivations {
  Tensor qkv;     // [N, qkv_width]
  Tensor heads;   // [N, heads_width]: the heads' outputs before the output projection
  Tensor record;  // the attention op's record (windows only)
};

// The backward pass's scratch, reusable across layers.
struct AttentionScratch {
  Tensor dqkv, dheads;  // like qkv and heads
  Tensor attention;     // AttentionBackward's scratch
};

// q, k and v as [N, heads, head_dim] views of the packed projection; qk covers q and k together
// ([N, heads + kv_heads, head_dim]), which rotary embeddings rotate in one pass.
struct QkvViews {
  Tensor q, k, v, qk;
};
QkvViews split_qkv(const Tensor& qkv, const ops::AttentionSpec& spec);

// out[N, C] = the block applied to inp[N, C].
void self_attention_forward(const BlockContext& c, const SelfAttention& a, const Tensor& out,
                            const Tensor& inp, const AttentionActivations& acts);
// dinp (overwritten) = the input's gradient; parameter gradients += theirs.
void self_attention_backward(const BlockContext& c, const SelfAttention& a, const Tensor& dinp,
                             const Tensor& dout, const Tensor& inp,
                             const AttentionActivations& acts, const AttentionScratch& scratch);

}  // namespace switchyard::model::blocks
