// The op list: every kernel a model can ask a backend for, written once.
//
// An op is a plain struct of typed tensor references (core/tensor.h) and a small spec; a call is
// `backend.run(ops::Linear{...})`. SWITCHYARD_OPS below lists them; the Backend interface, the
// profiling wrapper and the host fallback are generated from that one list, so adding an op means
// its struct here, its CPU reference (backend/cpu) and only the backends that accelerate it.
//
// Conventions, shared by every op:
//   N rows (tokens of a flat batch), C channels, OC output channels, V vocabulary. A linear
//   layer's weight is [OC, C] (PyTorch nn.Linear layout). Activations and their gradients are in
//   the backend's activation dtype (Backend::precision()); parameters, their gradients and AdamW
//   moments are fp32; statistics (means, reciprocal deviations, losses, attention records) are
//   fp32; step totals are fp64; token ids, positions and block tables are int32.
//   Backward ops ACCUMULATE (+=) into every gradient they write, so callers zero gradients once per
//   step and residual branches and gradient accumulation need no extra code. The only exception
//   is CrossEntropyBackward, which overwrites its output.
//   An empty Tensor (data == nullptr) marks an optional operand that is absent.
//
// for_each_tensor(f) calls f(tensor, access) for every operand, present or not, so that generic
// code (the host fallback, profiling) can move and describe them without knowing the op.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace switchyard::backend::ops {

enum class Access { kRead, kWrite, kReadWrite };

// ---- embeddings ----

// out[N, C] = table[ids[n], :] + position_table[position_ids[n], :] (the second term only when
// position_table is present). Also a row gather: out[r] = table[ids[r]] selects rows of any
// activation. ids (and position_ids) are range-checked by the caller.
// With table_low (position_low), the table is a parameter held as fp32 halves
// (core/fp32_halves.h): `table` [rows, C] bf16 their high halves, table_low [rows, C] u16 their low
// ones, together the exact fp32 values.
struct Embedding {
  Tensor out;             // [N, C] activation
  Tensor ids;             // [N] int32
  Tensor table;           // [rows, C] fp32 parameter, or an activation when gathering rows
  Tensor position_ids;    // [N] int32, optional
  Tensor position_table;  // [positions, C] fp32, optional
  Tensor table_low;       // [rows, C] u16, optional
  Tensor position_low;    // [positions, C] u16, optional
  template <typename F> void for_each_tensor(F&& f) const {
    f(out, Access::kWrite), f(ids, Access::kRead), f(table, Access::kRead);
    f(position_ids, Access::kRead), f(position_table, Access::kRead);
    f(table_low, Access::kRead), f(position_low, Access::kRead);
  }
};

// dtable[ids[n], :] += dout[n, :]; dposition_table[position_ids[n], :] += dout[n, :].
struct EmbeddingBackward {
  Tensor dtable;           // [rows, C] fp32
  Tensor dposition_table;  // [positions, C] fp32, optional
  Tensor dout;             // [N, C] activation
  Tensor ids;              // [N] int32
  Tensor position_ids;     // [N] int32, optional
  template <typename F> void for_each_tensor(F&& f) const {
    f(dtable, Access::kReadWrite), f(dposition_table, Access::kReadWrite);
    f(dout, Access::kRead), f(ids, Access::kRead), f(position_ids, Access::kRead);
  }
};

// ---- normalisation ----

// out[N, C] = (inp - mean) * rstd * weight + bias per row (torch.nn.LayerNorm); mean[N] and
// rstd[N] are kept for the backward pass.
struct LayerNorm {
  Tensor out, mean, rstd;  // [N, C] activation; [N] fp32; [N] fp32
  Tensor inp;              // [N, C] activation
  Tensor weight, bias;     // [C] fp32
  float epsilon = 1e-5f;
  template <typename F> void for_each_tensor(F&& f) const {
    f(out, Access::kWrite), f(mean, Access::kWrite), f(rstd, Access::kWrite);
    f(inp, Access::kRead), f(weight, Access::kRead), f(bias, Access::kRead);
  }
};

// dinp += d/dinp, dweight += d/dweight, dbias += d/dbias of LayerNorm given dout.
struct LayerNormBackward {
  Tensor dinp, dweight, dbias;  // [N, C] activation; [C] fp32; [C] fp32
  Tensor dout, inp;             // [N, C] activation
  Tensor weight, mean, rstd;    // [C]; [N]; [N] fp32
  template <typename F> void for_each_tensor(F&& f) const {
    f(dinp, Access::kReadWrite), f(dweight, Access::kReadWrite), f(dbias, Access::kReadWrite);
    f(dout, Access::kRead), f(inp, Access::kRead), f(weight, Access::kRead);
    f(mean, Access::kRead), f(rstd, Access::kRead);
  }
};

// residual = a + b, then out = LayerNorm(residual): the same results as Add then LayerNorm.
struct AddLayerNorm {
  Tensor residual, out, mean, rstd;  // [N, C], [N, C] activations; [N], [N] fp32
  Tensor a, b;                       // [N, C] activations
  Tensor weight, bias;               // [C] fp32
  float epsilon = 1e-5f;
  template <typename F> void for_each_tensor(F&& f) const {
    f(residual, Access::kWrite), f(out, Access::kWrite), f(mean, Access::kWrite);
    f(rstd, Access::kWrite), f(a, Access::kRead), f(b, Access::kRead);
    f(weight, Access::kRead), f(bias, Access::kRead);
  }
};

// out[N, C] = inp * rstd * weight per row, rstd = 1 / sqrt(mean(inp^2) + epsilon) (RMSNorm: no
// mean subtraction, no shift); rstd[N] is kept for the backward pass.
struct RmsNorm {
  Tensor out, rstd;  // [N, C] activation; [N] fp32
  Tensor inp;        // [N, C] activation
  Tensor weight;     // [C] fp32
  float epsilon = 1e-5f;
  template <typename F> void for_each_tensor(F&& f) const {
    f(out, Access::kWrite), f(rstd, Access::kWrite), f(inp, Access::kRead);
    f(weight, Access::kRead);
  }
};

// dinp += d/dinp, dweight += d/dweight of RmsNorm given dout.
struct RmsNormBackward {
  Tensor dinp, dweight;      // [N, C] activation; [C] fp32
  Tensor dout, inp;          // [N, C] activations
  Tensor weight, rstd;       // [C]; [N] fp32
  template <typename F> void for_each_tensor(F&& f) const {
    f(dinp, Access::kReadWrite), f(dweight, Access::kReadWrite), f(dout, Access::kRead);
    f(inp, Access::kRead), f(weight, Access::kRead), f(rstd, Access::kRead);
  }
};

// ---- linear layers ----

// out[N, OC] = inp[N, C] @ weight[OC, C]^T + bias[OC]. weight is fp32 or, on backends that
// compute in bf16, bf16 (Backend::precision().matmul_weights); bias is fp32.
struct Linear {
  Tensor out;     // [N, OC] activation
  Tensor inp;     // [N, C] activation
  Tensor weight;  // [OC, C]
  Tensor bias;    // [OC], optional
  // Each row's result must not depend on the other rows (how many, or what they hold), so that a
  // sequence's numbers are the same alone or batched with others (serving over a KV cache).
  // Backends whose products are row-independent anyway, or that are held to a tolerance, may
  // ignore it; the CPU's fp32 products honour it (one summation order per output whatever the
  // rows, backend/cpu/invariant_linear.cc) at 70-90% of oneDNN's speed for many rows.
  bool batch_invariant = false;
  // Nonzero: the weight holds the same values whenever an op carries this stamp for it (the model
  // takes a new stamp whenever it changes its weights: model/weight_stamp.h), so a backend may keep
  // a rearranged copy of it and reuse that while the stamp stays (cpu-bf16: oneDNN's blocked
  // layout for a continuous batch's products). Zero: nothing may be assumed.
  uint64_t weight_stamp = 0;
  template <typename F> void for_each_tensor(F&& f) const {
    f(out, Access::kWrite), f(inp, Access::kRead), f(weight, Access::kRead), f(bias, Access::kRead);
  }
};

// dinp[N, C] += dout @ weight; dweight[OC, C] += dout^T @ inp; dbias[OC] += column sums of dout.
// dinp and dbias are optional. The overwrite flags make `+=` an `=` (an empty sum then writes
// zeros): for dinp when its buffer holds no earlier sum, for dweight and dbias on their first write
// in a training step. Each saves a pass zeroing the buffer and the product's read of it.
struct LinearBackward {
  Tensor dinp;     // [N, C] activation, optional
  Tensor dweight;  // [OC, C] fp32
  Tensor dbias;    // [OC] fp32, optional
  Tensor dout;     // [N, OC] activation
  Tensor inp;      // [N, C] activation
  Tensor weight;   // [OC, C], as Linear's
  bool overwrite_dinp = false;
  bool overwrite_param_grads = false;  // dweight and dbias
  template <typename F> void for_each_tensor(F&& f) const {
    f(dinp, Access::kReadWrite), f(dweight, Access::kReadWrite), f(dbias, Access::kReadWrite);
    f(dout, Access::kRead), f(inp, Access::kRead), f(weight, Access::kRead);
  }
};

// pre = Linear(inp), out = Gelu(pre); pre is kept for the backward pass.
struct LinearGelu {
  Tensor pre, out;  // [N, OC] activations
  Tensor inp;       // [N, C] activation
  Tensor weight;    // [OC, C]
  Tensor bias;      // [OC], optional
  bool batch_invariant = false;  // as Linear's
  uint64_t weight_stamp = 0;     // as Linear's
  template <typename F> void for_each_tensor(F&& f) const {
    f(pre, Access::kWrite), f(out, Access::kWrite), f(inp, Access::kRead);
    f(weight, Access::kRead), f(bias, Access::kRead);
  }
};

// ---- elementwise ----

// out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), the tanh approximation GPT-2 uses.
struct Gelu {
  Tensor out, inp;  // same shape, activations
  template <typename F> void for_each_tensor(F&& f) const {
    f(out, Access::kWrite), f(inp, Access::kRead);
  }
};

// dinp += gelu'(inp) * dout.
struct GeluBackward {
  Tensor dinp, inp, dout;
  template <typename F> void for_each_tensor(F&& f) const {
    f(dinp, Access::kReadWrite), f(inp, Access::kRead), f(dout, Access::kRead);
  }
};

// out = a + b (out may alias a or b).
struct Add {
  Tensor out, a, b;
  template <typename F> void for_each_tensor(F&& f) const {
    f(out, Access::kWrite), f(a, Access::kRead), f(b, Access::kRead);
  }
};

// dst += src: the backward pass of a residual add.
struct Accumulate {
  Tensor dst, src;
  template <typename F> void for_each_tensor(F&& f) const {
    f(dst, Access::kReadWrite), f(src, Access::kRead);
  }
};

// out = inp converted to out's dtype (fp32 <-> bf16, rounding to nearest even), same shape.
struct Cast {
  Tensor out, inp;
  template <typename F> void for_each_tensor(F&& f) const {
    f(out, Access::kWrite), f(inp, Access::kRead);
  }
};

// ---- rotary position embeddings ----

// Rotates x in place by each row's position: for every head, the pair (x[i], x[i + d/2]) of the
// half-split layout becomes (x[i] c - x[i + d/2] s, x[i + d/2] c + x[i] s) with c = cos[p, i],
// s = sin[p, i], p = positions[n]. The tables may carry a scale (YaRN's attention factor), so the
// map is a scaled rotation; `transpose` applies its transpose (c, -s), which is the backward pass
// of the forward map on a gradient. q and k, side by side in a packed projection, are one view.
struct Rope {
  Tensor x;          // [N, heads, head_dim] view, rows may be strided; read and written
  Tensor cos, sin;   // [positions, head_dim / 2] fp32
  Tensor positions;  // [N] int32
  bool transpose = false;
  template <typename F> void for_each_tensor(F&& f) const {
    f(x, Access::kReadWrite), f(cos, Access::kRead), f(sin, Access::kRead);
    f(positions, Access::kRead);
  }
};

// ---- mixture of experts ----
//
// A layer of E experts with top-k routing runs as: router logits (Linear) -> TopKRouting ->
// GroupByExpert -> the rows gathered in grouped order (Embedding as a row gather) ->
// ExpertLinear -> ClampedSwiglu -> ExpertLinear -> ExpertCombine. A = N * k assignments; the
// assignment of row n's j-th choice is a = n * k + j. Grouped order lists the assignments by
// expert (ascending), and within an expert by assignment, so each expert's rows are one
// contiguous range offsets[e] .. offsets[e + 1] and its weights stream once per step.

// The k largest logits of each row (largest first; among equal logits the lower expert first) and
// their weights: a softmax over those k logits only.
struct TopKRouting {
  Tensor expert_ids;  // [N, k] int32
  Tensor weights;     // [N, k] fp32
  Tensor logits;      // [N, E] activation
  template <typename F> void for_each_tensor(F&& f) const {
    f(expert_ids, Access::kWrite), f(weights, Access::kWrite), f(logits, Access::kRead);
  }
};

// dlogits[n, expert_ids[n, j]] += the gradient of the softmax over the chosen logits, given
// dweights.
struct TopKRoutingBackward {
  Tensor dlogits;     // [N, E] activation
  Tensor dweights;    // [N, k] fp32
  Tensor weights;     // [N, k] fp32
  Tensor expert_ids;  // [N, k] int32
  template <typename F> void for_each_tensor(F&& f) const {
    f(dlogits, Access::kReadWrite), f(dweights, Access::kRead), f(weights, Access::kRead);
    f(expert_ids, Access::kRead);
  }
};

// The grouped order of the assignments: order[g] is the assignment at grouped position g,
// rows[g] = order[g] / k its token row, position[a] the grouped position of assignment a, and
// offsets[e] the first grouped position of expert e (offsets[E] = A). expert_ids are
// range-checked by the backend.
struct GroupByExpert {
  Tensor order, rows, position;  // [A] int32
  Tensor offsets;                // [E + 1] int32
  Tensor expert_ids;             // [N, k] int32
  int experts = 0;               // E
  template <typename F> void for_each_tensor(F&& f) const {
    f(order, Access::kWrite), f(rows, Access::kWrite), f(position, Access::kWrite);
    f(offsets, Access::kWrite), f(expert_ids, Access::kRead);
  }
};

// Every expert's linear layer over its own rows: out[g] = inp[g] @ weight[e]^T + bias[e] for g in
// [offsets[e], offsets[e + 1]).
struct ExpertLinear {
  Tensor out;      // [A, OC] activation, grouped order
  Tensor inp;      // [A, C] activation, grouped order
  Tensor weight;   // [E, OC, C]
  Tensor bias;     // [E, OC] fp32, optional
  Tensor offsets;  // [E + 1] int32
  bool batch_invariant = false;  // as Linear's: a row's result never depends on the others
  template <typename F> void for_each_tensor(F&& f) const {
    f(out, Access::kWrite), f(inp, Access::kRead), f(weight, Access::kRead);
    f(bias, Access::kRead), f(offsets, Access::kRead);
  }
};

// dinp += dout @ weight[e]; dweight[e] += dout^T @ inp; dbias[e] += column sums of dout, each over
// expert e's rows. dinp and dbias are optional.
struct ExpertLinearBackward {
  Tensor dinp;     // [A, C] activation, optional
  Tensor dweight;  // [E, OC, C] fp32
  Tensor dbias;    // [E, OC] fp32, optional
  Tensor dout;     // [A, OC] activation
  Tensor inp;      // [A, C] activation
  Tensor weight;   // [E, OC, C], as ExpertLinear's
  Tensor offsets;  // [E + 1] int32
  template <typename F> void for_each_tensor(F&& f) const {
    f(dinp, Access::kReadWrite), f(dweight, Access::kReadWrite), f(dbias, Access::kReadWrite);
    f(dout, Access::kRead), f(inp, Access::kRead), f(weight, Access::kRead);
    f(offsets, Access::kRead);
  }
};

// gpt-oss's clamped SwiGLU over interleaved gate and up columns (gate = inp[:, 2i], up =
// inp[:, 2i + 1]): g = min(gate, limit), u = clamp(up, -limit, limit),
// out[:, i] = (u + 1) * g * sigmoid(alpha * g).
struct ClampedSwiglu {
  Tensor out;  // [A, I] activation
  Tensor inp;  // [A, 2I] activation
  float alpha = 1.702f;
  float limit = 7.0f;
  template <typename F> void for_each_tensor(F&& f) const {
    f(out, Access::kWrite), f(inp, Access::kRead);
  }
};

// dinp += the gradient of ClampedSwiglu given dout (zero where a clamp held the value; the clamps
// pass the gradient at their bounds, as torch.clamp does).
struct ClampedSwigluBackward {
  Tensor dinp;  // [A, 2I] activation
  Tensor inp;   // [A, 2I] activation
  Tensor dout;  // [A, I] activation
  float alpha = 1.702f;
  float limit = 7.0f;
  template <typename F> void for_each_tensor(F&& f) const {
    f(dinp, Access::kReadWrite), f(inp, Access::kRead), f(dout, Access::kRead);
  }
};

// out[n] = sum over j = 0..k-1 of weights[n, j] * expert_out[position[n * k + j]], summed in that
// order (so a row's result never depends on the other rows).
struct ExpertCombine {
  Tensor out;         // [N, C] activation
  Tensor expert_out;  // [A, C] activation, grouped order
  Tensor weights;     // [N, k] fp32
  Tensor position;    // [A] int32
  template <typename F> void for_each_tensor(F&& f) const {
    f(out, Access::kWrite), f(expert_out, Access::kRead), f(weights, Access::kRead);
    f(position, Access::kRead);
  }
};

// dexpert_out[position[a]] += weights[n, j] * dout[n]; dweights[n, j] += dout[n] . expert_out[...].
struct ExpertCombineBackward {
  Tensor dexpert_out;  // [A, C] activation
  Tensor dweights;     // [N, k] fp32
  Tensor dout;         // [N, C] activation
  Tensor expert_out;   // [A, C] activation
  Tensor weights;      // [N, k] fp32
  Tensor position;     // [A] int32
  template <typename F> void for_each_tensor(F&& f) const {
    f(dexpert_out, Access::kReadWrite), f(dweights, Access::kReadWrite), f(dout, Access::kRead);
    f(expert_out, Access::kRead), f(weights, Access::kRead), f(position, Access::kRead);
  }
};

// The router's load-balancing statistics (Switch Transformer's auxiliary loss, as gpt-oss trains
// with it), summed over layers: totals[0, e] += the number of assignments to expert e,
// totals[1, e] += the sum over rows of softmax(logits[n])[e] (over all E). With R rows over all
// layers the loss is E / R^2 * sum_e totals[0, e] * totals[1, e].
struct RouterLoadStats {
  Tensor totals;      // [2, E] fp64, accumulated
  Tensor logits;      // [N, E] activation
  Tensor expert_ids;  // [N, k] int32
  template <typename F> void for_each_tensor(F&& f) const {
    f(totals, Access::kReadWrite), f(logits, Access::kRead), f(expert_ids, Access::kRead);
  }
};

// dlogits[n] += the gradient of scale * sum_e counts[e] * softmax(logits[n])[e], where counts =
// totals[0] (fixed: the choice of experts passes no gradient). The model's scale is
// loss_scale * coefficient * E / R^2.
struct RouterLoadBackward {
  Tensor dlogits;  // [N, E] activation
  Tensor logits;   // [N, E] activation
  Tensor totals;   // [2, E] fp64, as RouterLoadStats left it over all layers
  float scale = 0;
  template <typename F> void for_each_tensor(F&& f) const {
    f(dlogits, Access::kReadWrite), f(logits, Access::kRead), f(totals, Access::kRead);
  }
};

// ---- attention ----

// Heads and masking of one attention layer. A query at position p attends to positions
// (p - window, p] (all of [0, p] when window is 0). Grouped-query attention: query head h reads
// key-value head h / (heads / kv_heads). With sinks, each head's softmax denominator also holds
// exp(sinks[h]) (a learned logit that takes probability and gives no value).
struct AttentionSpec {
  int heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int window = 0;      // 0: full causal attention
  float scale = 0.0f;  // scores are q.k * scale; 0 means 1/sqrt(head_dim)
  float effective_scale() const;
};

// Causal self-attention over B windows of T tokens each (training and evaluation). q [B*T,
// heads, head_dim], k and v [B*T, kv_heads, head_dim] are views whose rows may be strided (q, k
// and v side by side in one packed projection); the last two dimensions are dense. out [B*T,
// heads * head_dim]. record is the backend's own record for the backward pass
// (Backend::attention_record_floats fp32 values).
struct Attention {
  Tensor out;
  Tensor record;
  Tensor q, k, v;
  Tensor sinks;  // [heads] fp32, optional
  int batch = 0, seq = 0;
  AttentionSpec spec;
  template <typename F> void for_each_tensor(F&& f) const {
    f(out, Access::kWrite), f(record, Access::kWrite), f(q, Access::kRead);
    f(k, Access::kRead), f(v, Access::kRead), f(sinks, Access::kRead);
  }
};

// dq, dk, dv (views like q, k, v) += gradients given dout and the forward's out and record;
// dsinks += the sinks' gradient when sinks are present. scratch holds
// Backend::attention_scratch_floats fp32 values.
struct AttentionBackward {
  Tensor dq, dk, dv, dsinks;
  Tensor scratch;
  Tensor dout, out, record;
  Tensor q, k, v, sinks;
  int batch = 0, seq = 0;
  AttentionSpec spec;
  template <typename F> void for_each_tensor(F&& f) const {
    f(dq, Access::kReadWrite), f(dk, Access::kReadWrite), f(dv, Access::kReadWrite);
    f(dsinks, Access::kReadWrite), f(scratch, Access::kReadWrite), f(dout, Access::kRead);
    f(out, Access::kRead), f(record, Access::kRead), f(q, Access::kRead), f(k, Access::kRead);
    f(v, Access::kRead), f(sinks, Access::kRead);
  }
};

// Stores new keys and values into a paged cache: row n of k and v goes to slot slots[n] (block
// slots[n] / block_size, offset slots[n] % block_size); a negative slot skips the row.
struct KvCacheWrite {
  Tensor k_cache, v_cache;  // [blocks, block_size, kv_heads, head_dim] activations
  Tensor k, v;              // [N, kv_heads, head_dim] views, rows may be strided
  Tensor slots;             // [N] int32
  template <typename F> void for_each_tensor(F&& f) const {
    f(k_cache, Access::kReadWrite), f(v_cache, Access::kReadWrite), f(k, Access::kRead);
    f(v, Access::kRead), f(slots, Access::kRead);
  }
};

// Attention of a flat batch's queries over a paged cache (prefill chunks and decode steps). The
// rows of sequence s are [query_start[s], query_start[s + 1]); its context holds context_len[s]
// tokens (the new ones included, already written by KvCacheWrite), so its last row is at
// position context_len[s] - 1 and its rows' positions run consecutively up to it. Position p of s
// lives in block block_tables[s, p / block_size] at offset p % block_size; entries for positions
// a sliding window no longer needs may be -1 and are never read.
struct PagedAttention {
  Tensor out;                // [N, heads * head_dim] activation
  Tensor q;                  // [N, heads, head_dim] view
  Tensor k_cache, v_cache;   // [blocks, block_size, kv_heads, head_dim]
  Tensor block_tables;       // [S, max_blocks_per_sequence] int32
  Tensor query_start;        // [S + 1] int32
  Tensor context_len;        // [S] int32
  Tensor sinks;              // [heads] fp32, optional
  int max_query_len = 0;     // host-side bounds of the metadata above, for launch sizing
  int max_context_len = 0;
  AttentionSpec spec;
  template <typename F> void for_each_tensor(F&& f) const {
    f(out, Access::kWrite), f(q, Access::kRead), f(k_cache, Access::kRead);
    f(v_cache, Access::kRead), f(block_tables, Access::kRead), f(query_start, Access::kRead);
    f(context_len, Access::kRead), f(sinks, Access::kRead);
  }
};

// One decoding position for B sequences with a dense cache (GPT-2's layout: each layer's cache
// is [B, heads, max_seq, head_dim]): writes the position's k and v at `pos`, then attends q over
// positions 0..pos. Used until decoding moves to the paged cache (KvCacheWrite, PagedAttention).
struct AttentionDecode {
  Tensor out;               // [B, heads * head_dim] activation
  Tensor q, k, v;           // [B, heads, head_dim] views of the new position's projection
  Tensor k_cache, v_cache;  // [B, heads, max_seq, head_dim] activations
  int pos = 0;
  AttentionSpec spec;
  template <typename F> void for_each_tensor(F&& f) const {
    f(out, Access::kWrite), f(q, Access::kRead), f(k, Access::kRead), f(v, Access::kRead);
    f(k_cache, Access::kReadWrite), f(v_cache, Access::kReadWrite);
  }
};

// ---- loss ----

// losses[n] = -log softmax(logits[n, :])[targets[n]].
struct CrossEntropy {
  Tensor losses;   // [N] fp32
  Tensor logits;   // [N, V] activation
  Tensor targets;  // [N] int32
  template <typename F> void for_each_tensor(F&& f) const {
    f(losses, Access::kWrite), f(logits, Access::kRead), f(targets, Access::kRead);
  }
};

// dlogits = (softmax(logits) - onehot(targets)) * dloss. Overwrites; dlogits may alias logits.
// losses, when given, are the forward pass's over these logits: a backend may take each row's
// log-sum-exp from them (losses[n] + logits[n, targets[n]]) rather than sum the row again.
struct CrossEntropyBackward {
  Tensor dlogits, logits, targets;
  Tensor losses;  // [N] fp32, optional
  float dloss = 1.0f;
  template <typename F> void for_each_tensor(F&& f) const {
    f(dlogits, Access::kWrite), f(logits, Access::kRead), f(targets, Access::kRead);
    f(losses, Access::kRead);
  }
};

// ---- optimizer and step statistics ----

// total[0] = sum of x^2, in double precision.
struct SumOfSquares {
  Tensor total;  // [1] fp64
  Tensor x;      // [N] fp32
  template <typename F> void for_each_tensor(F&& f) const {
    f(total, Access::kWrite), f(x, Access::kRead);
  }
};

// total[0] += scale * sum of x, in double precision (a micro-batch's loss).
struct AccumulateSum {
  Tensor total;  // [1] fp64
  Tensor x;      // [N] fp32
  double scale = 1.0;
  template <typename F> void for_each_tensor(F&& f) const {
    f(total, Access::kReadWrite), f(x, Access::kRead);
  }
};

// Hyper-parameters of one AdamW update (decoupled weight decay, as torch.optim.AdamW).
struct AdamWStep {
  float learning_rate = 0;
  float beta1 = 0.9f;
  float beta2 = 0.95f;
  float epsilon = 1e-8f;
  float weight_decay = 0;
  int step = 1;             // 1-based, for bias correction
  float grad_scale = 1.0f;  // gradients are multiplied by this first
};

// One AdamW update of params[N] from grads[N] * step.grad_scale and moments m, v. With
// grad_sum_of_squares, the gradients are also scaled by clip_scale(sqrt(sum), clip)
// (gradient_clipping.h): global-norm clipping from a norm that never leaves the device. With
// params_copy, the updated parameters are also written there in its dtype (the bf16 weight copies
// products read). With params_low, the parameters are held as fp32 halves (core/fp32_halves.h):
// params [N] bf16 holds their high halves (the weights bf16 products read) and params_low their low
// ones; the update reads and writes both, exactly as it would the fp32 values.
struct AdamW {
  Tensor params, grads, m, v;  // [N] fp32 (params: bf16 with params_low)
  Tensor grad_sum_of_squares;  // [1] fp64, optional
  Tensor params_copy;          // [N] bf16, optional
  Tensor params_low;           // [N] u16, optional
  AdamWStep step;
  float clip = 0.0f;
  template <typename F> void for_each_tensor(F&& f) const {
    f(params, Access::kReadWrite), f(grads, Access::kRead), f(m, Access::kReadWrite);
    f(v, Access::kReadWrite), f(grad_sum_of_squares, Access::kRead);
    f(params_copy, Access::kWrite), f(params_low, Access::kReadWrite);
  }
};

}  // namespace switchyard::backend::ops

// Every op, as X(StructName, snake_case_name). Composite ops (LinearGelu, AddLayerNorm) have
// composing defaults in Backend; every other op falls back to the CPU reference on the host.
#define SWITCHYARD_OPS(X)                          \
  X(Embedding, embedding)                          \
  X(EmbeddingBackward, embedding_backward)         \
  X(LayerNorm, layernorm)                          \
  X(LayerNormBackward, layernorm_backward)         \
  X(AddLayerNorm, add_layernorm)                   \
  X(RmsNorm, rmsnorm)                              \
  X(RmsNormBackward, rmsnorm_backward)             \
  X(Linear, linear)                                \
  X(LinearBackward, linear_backward)               \
  X(LinearGelu, linear_gelu)                       \
  X(Gelu, gelu)                                    \
  X(GeluBackward, gelu_backward)                   \
  X(Add, add)                                      \
  X(Accumulate, accumulate)                        \
  X(Cast, cast)                                    \
  X(Rope, rope)                                    \
  X(TopKRouting, topk_routing)                     \
  X(TopKRoutingBackward, topk_routing_backward)    \
  X(GroupByExpert, group_by_expert)                \
  X(ExpertLinear, expert_linear)                   \
  X(ExpertLinearBackward, expert_linear_backward)  \
  X(ClampedSwiglu, clamped_swiglu)                 \
  X(ClampedSwigluBackward, clamped_swiglu_backward) \
  X(ExpertCombine, expert_combine)                 \
  X(ExpertCombineBackward, expert_combine_backward) \
  X(RouterLoadStats, router_load_stats)            \
  X(RouterLoadBackward, router_load_backward)      \
  X(Attention, attention)                          \
  X(AttentionBackward, attention_backward)         \
  X(KvCacheWrite, kv_cache_write)                  \
  X(PagedAttention, paged_attention)               \
  X(AttentionDecode, attention_decode)             \
  X(CrossEntropy, cross_entropy)                   \
  X(CrossEntropyBackward, cross_entropy_backward)  \
  X(SumOfSquares, sum_of_squares)                  \
  X(AccumulateSum, accumulate_sum)                 \
  X(AdamW, adamw)

namespace switchyard::backend {

// One value per op, in list order.
enum class OpKind {
#define SWITCHYARD_OP_KIND(Op, name) k##Op,
  SWITCHYARD_OPS(SWITCHYARD_OP_KIND)
#undef SWITCHYARD_OP_KIND
};

// "linear", "attention_backward", ...
const char* op_name(OpKind kind);

template <typename Op>
struct OpTraits;
#define SWITCHYARD_OP_TRAITS(Op, name)                 \
  template <>                                          \
  struct OpTraits<ops::Op> {                           \
    static constexpr OpKind kind = OpKind::k##Op;      \
    static constexpr const char* kName = #name;        \
  };
SWITCHYARD_OPS(SWITCHYARD_OP_TRAITS)
#undef SWITCHYARD_OP_TRAITS

}  // namespace switchyard::backend
