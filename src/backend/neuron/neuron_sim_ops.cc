// NeuronSimBackend's ops: check the operands, present them to one launch over device memory in
// place (kernel_launch.h), and run the op's tile program.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend/gradient_clipping.h"
#include "backend/host_fallback.h"
#include "backend/neuron/attention_decode_kernel.h"
#include "backend/neuron/attention_kernel.h"
#include "backend/neuron/cast_kernel.h"
#include "backend/neuron/clamped_swiglu_kernel.h"
#include "backend/neuron/cross_entropy_kernel.h"
#include "backend/neuron/embedding_kernel.h"
#include "backend/neuron/gelu_kernel.h"
#include "backend/neuron/kernel_launch.h"
#include "backend/neuron/kv_cache_write_kernel.h"
#include "backend/neuron/layernorm_kernel.h"
#include "backend/neuron/linear_kernel.h"
#include "backend/neuron/neuron_sim_backend.h"
#include "backend/neuron/optimizer_kernel.h"
#include "backend/neuron/paged_attention_kernel.h"
#include "backend/neuron/residual_kernel.h"
#include "backend/neuron/rmsnorm_kernel.h"
#include "backend/neuron/sim_op_checks.h"
#include "backend/neuron/sim_operands.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

// Tile programs, named apart from the Backend members that launch them.
namespace kernels = ::switchyard::backend::neuron;

namespace {

// ---- operand checks: `at` names the device and the op ("trn2-sim layernorm") ----

// The attention record: `floats` dense fp32 values at least (Backend::attention_record_floats).
void require_record(const std::string& at, const Tensor& record, size_t floats) {
  require(record.numel() >= static_cast<int64_t>(floats),
          "{}: the record must hold {} fp32 values, got {}", at, floats, record.describe());
  require_dense(at, record, "record");
}

// The layout the attention tile programs take: q, k and v are [N, heads or kv_heads, head_dim]
// views of one packed projection [N, (heads + 2 kv_heads) head_dim], each row q | k | v (GPT-2's
// [N, 3C] when kv_heads = heads), in one dtype.
bool packed_qkv(const Tensor& q, const Tensor& k, const Tensor& v, int64_t rows,
                const ops::AttentionSpec& spec) {
  const int64_t hd = spec.head_dim, H = spec.heads, KV = spec.kv_heads;
  const int64_t width = (H + 2 * KV) * hd;
  auto is_part = [&](const Tensor& t, int64_t heads, int64_t col) {
    return t.rank == 3 && t.dtype == q.dtype && t.shape[0] == rows && t.shape[1] == heads &&
           t.shape[2] == hd && t.strides[2] == 1 && t.strides[1] == hd &&
           (rows == 1 || t.strides[0] == width) &&
           t.data == static_cast<const char*>(q.data) + col * dtype_bytes(q.dtype);
  };
  return !q.empty() && !k.empty() && !v.empty() && is_part(q, H, 0) && is_part(k, KV, H * hd) &&
         is_part(v, KV, (H + KV) * hd);
}

// Multi-head causal attention with no window and the usual scale: what the decode tile program
// computes.
bool plain_multi_head(const ops::AttentionSpec& spec) {
  const float usual = 1.0f / std::sqrt(static_cast<float>(spec.head_dim));
  return spec.heads > 0 && spec.heads == spec.kv_heads && spec.head_dim > 0 &&
         spec.head_dim <= kPartitions && spec.window == 0 &&
         (spec.scale == 0.0f || spec.scale == usual);
}

// A dense [rows, cols] activation of the attention ops (out, dout), in q's dtype.
bool dense_rows(const Tensor& t, int64_t rows, int64_t cols, DType dtype) {
  return t.rank == 2 && t.shape[0] == rows && t.shape[1] == cols && t.is_contiguous() &&
         t.dtype == dtype;
}

// Training attention in a form the tile programs take: grouped-query heads of at most 128
// dimensions, any window and a positive scale, q, k, v packed, out dense and sinks absent or one
// fp32 value per head. Forward and backward decide by these operands alone, so that the backward
// pass reads the record the way the forward pass wrote it (log-sum-exps or probabilities).
bool native_training_attention(const ops::AttentionSpec& spec, const Tensor& q, const Tensor& k,
                               const Tensor& v, const Tensor& sinks, const Tensor& out,
                               int batch, int seq) {
  const int64_t N = int64_t{batch} * seq;
  const float scale = spec.effective_scale();
  return batch > 0 && seq > 0 && spec.heads > 0 && spec.kv_heads > 0 &&
         spec.heads % spec.kv_heads == 0 && spec.head_dim > 0 &&
         spec.head_dim <= kPartitions && spec.window >= 0 && scale > 0.0f &&
         std::isfinite(scale) && packed_qkv(q, k, v, N, spec) &&
         dense_rows(out, N, int64_t{spec.heads} * spec.head_dim, q.dtype) &&
         (sinks.empty() || (sinks.dtype == DType::kF32 && sinks.numel() == spec.heads &&
                            sinks.is_contiguous()));
}

kernels::AttentionShape attention_shape(const ops::AttentionSpec& spec, int batch, int seq) {
  return {.batch = batch, .seq = seq, .heads = spec.heads, .kv_heads = spec.kv_heads,
          .head_dim = spec.head_dim, .window = spec.window, .scale = spec.effective_scale()};
}

// A [rows, heads, head_dim] view whose heads are dense (the paged cache ops' k, v and q): rows
// of heads * head_dim contiguous elements, any row stride.
bool dense_heads(const Tensor& t, int64_t rows, int64_t heads, int64_t head_dim) {
  return t.rank == 3 && t.shape[0] == rows && t.shape[1] == heads && t.shape[2] == head_dim &&
         t.strides[2] == 1 && t.strides[1] == head_dim && t.strides[0] >= heads * head_dim;
}

// A dense [blocks, block_size, kv_heads, head_dim] paged cache.
bool paged_cache(const Tensor& t, int64_t kv_heads, int64_t head_dim) {
  return t.rank == 4 && t.shape[2] == kv_heads && t.shape[3] == head_dim && t.shape[1] > 0 &&
         t.is_contiguous();
}

// Slot ids of the paged cache fit int32 tiles and pass through fp32 exactly below 2^24.
constexpr int64_t kMaxCacheRows = int64_t{1} << 24;

}  // namespace

std::string NeuronSimBackend::op_label(const char* op) const { return name() + " " + op; }

// ---- embeddings ----

void NeuronSimBackend::run(const ops::Embedding& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("embedding");
  require_matrix(at, op.table, -1, -1, "table");
  const int64_t N = op.ids.numel(), C = op.table.shape[1];
  require_matrix(at, op.out, N, C, "out");
  require_ids(at, op.ids, N, op.table.shape[0], "ids");
  require(op.position_ids.empty() == op.position_table.empty(),
          "{}: position_ids and position_table come together (both or neither)", at);
  if (!op.position_table.empty()) {
    require_matrix(at, op.position_table, -1, C, "position_table");
    require_ids(at, op.position_ids, N, op.position_table.shape[0], "position_ids");
  }
  if (N == 0) return;
  Launch l(*core_);
  kernels::embedding_forward(*core_, l.hbm(op.out, "out"), l.hbm(op.ids, "ids"),
                             l.hbm(op.table, "table"), l.optional(op.position_ids, "position_ids"),
                             l.optional(op.position_table, "position_table"), compute_);
  l.finish();
}

void NeuronSimBackend::run(const ops::EmbeddingBackward& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("embedding_backward");
  require_matrix(at, op.dtable, -1, -1, "dtable");
  const int64_t N = op.ids.numel(), C = op.dtable.shape[1];
  require_matrix(at, op.dout, N, C, "dout");
  require_ids(at, op.ids, N, op.dtable.shape[0], "ids");
  require(op.position_ids.empty() == op.dposition_table.empty(),
          "{}: position_ids and dposition_table come together (both or neither)", at);
  if (!op.dposition_table.empty()) {
    require_matrix(at, op.dposition_table, -1, C, "dposition_table");
    require_ids(at, op.position_ids, N, op.dposition_table.shape[0], "position_ids");
  }
  if (N == 0) return;
  Launch l(*core_);
  kernels::embedding_backward(*core_, l.hbm(op.dtable, "dtable"),
                              l.optional(op.dposition_table, "dposition_table"),
                              l.hbm(op.dout, "dout"), l.hbm(op.ids, "ids"),
                              l.optional(op.position_ids, "position_ids"), compute_);
  l.finish();
}

// ---- normalisation ----

void NeuronSimBackend::run(const ops::LayerNorm& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("layernorm");
  require_matrix(at, op.inp, -1, -1, "inp");
  const int64_t N = op.inp.shape[0], C = op.inp.shape[1];
  require(C > 0, "{}: rows must have channels, got {}", at, op.inp.describe());
  require_matrix(at, op.out, N, C, "out");
  require_elements(at, op.mean, N, "mean");
  require_elements(at, op.rstd, N, "rstd");
  require_elements(at, op.weight, C, "weight");
  require_elements(at, op.bias, C, "bias");
  if (N == 0) return;
  Launch l(*core_);
  kernels::layernorm_forward(*core_, l.hbm(op.out, "out"), l.hbm(op.mean, "mean", {N}),
                             l.hbm(op.rstd, "rstd", {N}), l.hbm(op.inp, "inp"),
                             l.hbm(op.weight, "weight", {C}), l.hbm(op.bias, "bias", {C}),
                             compute_, op.epsilon);
  l.finish();
}

void NeuronSimBackend::run(const ops::LayerNormBackward& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("layernorm_backward");
  require_matrix(at, op.inp, -1, -1, "inp");
  const int64_t N = op.inp.shape[0], C = op.inp.shape[1];
  require(C > 0, "{}: rows must have channels, got {}", at, op.inp.describe());
  require_matrix(at, op.dinp, N, C, "dinp");
  require_matrix(at, op.dout, N, C, "dout");
  require_elements(at, op.mean, N, "mean");
  require_elements(at, op.rstd, N, "rstd");
  require_elements(at, op.weight, C, "weight");
  require_elements(at, op.dweight, C, "dweight");
  require_elements(at, op.dbias, C, "dbias");
  if (N == 0) return;
  Launch l(*core_);
  kernels::layernorm_backward(*core_, l.hbm(op.dinp, "dinp"), l.hbm(op.dweight, "dweight", {C}),
                              l.hbm(op.dbias, "dbias", {C}), l.hbm(op.dout, "dout"),
                              l.hbm(op.inp, "inp"), l.hbm(op.weight, "weight", {C}),
                              l.hbm(op.mean, "mean", {N}), l.hbm(op.rstd, "rstd", {N}), compute_);
  l.finish();
}

void NeuronSimBackend::run(const ops::RmsNorm& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("rmsnorm");
  require_matrix(at, op.inp, -1, -1, "inp");
  const int64_t N = op.inp.shape[0], C = op.inp.shape[1];
  require(C > 0, "{}: rows must have channels, got {}", at, op.inp.describe());
  require_matrix(at, op.out, N, C, "out");
  require_elements(at, op.rstd, N, "rstd");
  require_elements(at, op.weight, C, "weight");
  if (N == 0) return;
  Launch l(*core_);
  kernels::rmsnorm_forward(*core_, l.hbm(op.out, "out"), l.hbm(op.rstd, "rstd", {N}),
                           l.hbm(op.inp, "inp"), l.hbm(op.weight, "weight", {C}), compute_,
                           op.epsilon);
  l.finish();
}

void NeuronSimBackend::run(const ops::RmsNormBackward& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("rmsnorm_backward");
  require_matrix(at, op.inp, -1, -1, "inp");
  const int64_t N = op.inp.shape[0], C = op.inp.shape[1];
  require(C > 0, "{}: rows must have channels, got {}", at, op.inp.describe());
  require_matrix(at, op.dinp, N, C, "dinp");
  require_matrix(at, op.dout, N, C, "dout");
  require_elements(at, op.rstd, N, "rstd");
  require_elements(at, op.weight, C, "weight");
  require_elements(at, op.dweight, C, "dweight");
  if (N == 0) return;
  Launch l(*core_);
  kernels::rmsnorm_backward(*core_, l.hbm(op.dinp, "dinp"), l.hbm(op.dweight, "dweight", {C}),
                            l.hbm(op.dout, "dout"), l.hbm(op.inp, "inp"),
                            l.hbm(op.weight, "weight", {C}), l.hbm(op.rstd, "rstd", {N}), compute_);
  l.finish();
}

// ---- gpt-oss's clamped SwiGLU ----

namespace {

// inp [A, 2I]: returns I.
int64_t swiglu_width(const std::string& at, const Tensor& inp, float alpha, float limit) {
  require(std::isfinite(alpha) && std::isfinite(limit) && limit > 0,
          "{}: alpha must be finite and limit finite and positive, got alpha {} and limit {}", at,
          alpha, limit);
  require_matrix(at, inp, -1, -1, "inp");
  require(inp.shape[1] % 2 == 0 && inp.shape[1] > 0,
          "{}: inp must be [A, 2I] (gate and up interleaved), got {}", at, inp.describe());
  return inp.shape[1] / 2;
}

}  // namespace

void NeuronSimBackend::run(const ops::ClampedSwiglu& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("clamped_swiglu");
  const int64_t I = swiglu_width(at, op.inp, op.alpha, op.limit), A = op.inp.shape[0];
  require_matrix(at, op.out, A, I, "out");
  if (A == 0) return;
  Launch l(*core_);
  kernels::clamped_swiglu_forward(*core_, l.hbm(op.out, "out"), l.hbm(op.inp, "inp"), op.alpha,
                                  op.limit, compute_);
  l.finish();
}

void NeuronSimBackend::run(const ops::ClampedSwigluBackward& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("clamped_swiglu_backward");
  const int64_t I = swiglu_width(at, op.inp, op.alpha, op.limit), A = op.inp.shape[0];
  require_matrix(at, op.dinp, A, 2 * I, "dinp");
  require_matrix(at, op.dout, A, I, "dout");
  if (A == 0) return;
  Launch l(*core_);
  kernels::clamped_swiglu_backward(*core_, l.hbm(op.dinp, "dinp"), l.hbm(op.inp, "inp"),
                                   l.hbm(op.dout, "dout"), op.alpha, op.limit, compute_);
  l.finish();
}

// ---- linear layers ----

void NeuronSimBackend::run(const ops::Linear& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("linear");
  require_matrix(at, op.weight, -1, -1, "weight");
  const int64_t OC = op.weight.shape[0], C = op.weight.shape[1];
  require_matrix(at, op.inp, -1, C, "inp");
  const int64_t N = op.inp.shape[0];
  require_matrix(at, op.out, N, OC, "out");
  if (!op.bias.empty()) require_elements(at, op.bias, OC, "bias");
  if (N == 0 || OC == 0) return;
  Launch l(*core_);
  kernels::linear_forward(*core_, l.hbm(op.out, "out"), l.hbm(op.inp, "inp"),
                          l.hbm(op.weight, "weight"), l.optional(op.bias, "bias", {OC}),
                          compute_);
  l.finish();
}

void NeuronSimBackend::run(const ops::LinearBackward& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("linear_backward");
  require_matrix(at, op.weight, -1, -1, "weight");
  const int64_t OC = op.weight.shape[0], C = op.weight.shape[1];
  require_matrix(at, op.inp, -1, C, "inp");
  const int64_t N = op.inp.shape[0];
  require_matrix(at, op.dout, N, OC, "dout");
  require_matrix(at, op.dweight, OC, C, "dweight");
  if (!op.dinp.empty()) require_matrix(at, op.dinp, N, C, "dinp");
  if (!op.dbias.empty()) require_elements(at, op.dbias, OC, "dbias");
  if (N == 0 || OC == 0 || C == 0) {  // empty products: a gradient keeps its value or is zeroed
    zero_overwritten(op);
    return;
  }
  Launch l(*core_);
  kernels::linear_backward(*core_, l.optional(op.dinp, "dinp"), l.hbm(op.dweight, "dweight"),
                           l.optional(op.dbias, "dbias", {OC}), l.hbm(op.dout, "dout"),
                           l.hbm(op.inp, "inp"), l.hbm(op.weight, "weight"), compute_,
                           {.set_dinp = op.overwrite_dinp, .set_params = op.overwrite_param_grads});
  l.finish();
}

// ---- elementwise: every operand seen as a flat run of n elements ----

void NeuronSimBackend::run(const ops::Gelu& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("gelu");
  const int64_t n = op.inp.numel();
  require_elements(at, op.inp, n, "inp");
  require_elements(at, op.out, n, "out");
  if (n == 0) return;
  Launch l(*core_);
  kernels::gelu_forward(*core_, l.hbm(op.out, "out", {n}), l.hbm(op.inp, "inp", {n}), compute_);
  l.finish();
}

void NeuronSimBackend::run(const ops::GeluBackward& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("gelu_backward");
  const int64_t n = op.inp.numel();
  require_elements(at, op.inp, n, "inp");
  require_elements(at, op.dinp, n, "dinp");
  require_elements(at, op.dout, n, "dout");
  if (n == 0) return;
  Launch l(*core_);
  kernels::gelu_backward(*core_, l.hbm(op.dinp, "dinp", {n}), l.hbm(op.inp, "inp", {n}),
                         l.hbm(op.dout, "dout", {n}), compute_);
  l.finish();
}

void NeuronSimBackend::run(const ops::Add& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("add");
  const int64_t n = op.a.numel();
  require_elements(at, op.a, n, "a");
  require_elements(at, op.b, n, "b");
  require_elements(at, op.out, n, "out");
  if (n == 0) return;
  Launch l(*core_);
  kernels::residual_forward(*core_, l.hbm(op.out, "out", {n}), l.hbm(op.a, "a", {n}),
                            l.hbm(op.b, "b", {n}), compute_);
  l.finish();
}

void NeuronSimBackend::run(const ops::Accumulate& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("accumulate");
  const int64_t n = op.src.numel();
  require_elements(at, op.src, n, "src");
  require_elements(at, op.dst, n, "dst");
  if (n == 0) return;
  Launch l(*core_);
  kernels::accumulate(*core_, l.hbm(op.dst, "dst", {n}), l.hbm(op.src, "src", {n}), compute_);
  l.finish();
}

void NeuronSimBackend::run(const ops::Cast& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("cast");
  const int64_t n = op.inp.numel();
  require_elements(at, op.inp, n, "inp");
  require_elements(at, op.out, n, "out");
  if (n == 0) return;
  Launch l(*core_);
  kernels::cast(*core_, l.hbm(op.out, "out", {n}), l.hbm(op.inp, "inp", {n}));
  l.finish();
}

// ---- attention over training windows: tile programs where the form allows, else the host ----

void NeuronSimBackend::run(const ops::Attention& op) {
  const ops::AttentionSpec& spec = op.spec;
  if (!native_training_attention(spec, op.q, op.k, op.v, op.sinks, op.out, op.batch, op.seq)) {
    return run_on_host(op);
  }
  check_operand_dtypes(op);
  const std::string at = op_label("attention");
  const int64_t N = int64_t{op.batch} * op.seq, H = spec.heads;
  const int64_t width = (H + 2 * int64_t{spec.kv_heads}) * spec.head_dim;
  require_record(at, op.record, attention_record_floats(spec, op.batch, op.seq));
  Launch l(*core_);
  // The flash kernels keep one log-sum-exp per (sequence, head, row) at the start of the record.
  kernels::attention_forward(*core_, l.hbm(op.out, "out"),
                             l.hbm(op.record.data, DType::kF32, {N * H}, "lse"),
                             l.hbm(op.q.data, op.q.dtype, {N, width}, "qkv"),
                             l.optional(op.sinks, "sinks", {1, H}),
                             attention_shape(spec, op.batch, op.seq), compute_);
  l.finish();
}

void NeuronSimBackend::run(const ops::AttentionBackward& op) {
  const ops::AttentionSpec& spec = op.spec;
  if (!native_training_attention(spec, op.q, op.k, op.v, op.sinks, op.out, op.batch, op.seq)) {
    return run_on_host(op);
  }
  check_operand_dtypes(op);
  const std::string at = op_label("attention_backward");
  const int64_t N = int64_t{op.batch} * op.seq, H = spec.heads;
  const int64_t width = (H + 2 * int64_t{spec.kv_heads}) * spec.head_dim;
  // The forward pass ran as a tile program and left log-sum-exps, which only the tile program
  // reads: the gradients must come in the layout it takes.
  require(packed_qkv(op.dq, op.dk, op.dv, N, spec) && op.dq.dtype == op.q.dtype,
          "{}: dq, dk, dv must be views of one packed [{}, {}] gradient in q's dtype, like q, k "
          "and v; got {}, {}, {}",
          at, N, width, op.dq.describe(), op.dk.describe(), op.dv.describe());
  require(dense_rows(op.dout, N, H * spec.head_dim, op.q.dtype),
          "{}: dout must be a dense [{}, {}] tensor in q's dtype, got {}", at, N,
          H * spec.head_dim, op.dout.describe());
  if (!op.sinks.empty()) require_elements(at, op.dsinks, H, "dsinks");
  require_record(at, op.record, attention_record_floats(spec, op.batch, op.seq));
  Launch l(*core_);
  // `out` is not read: the kernel recomputes what it needs from q, k, v and the log-sum-exps, and
  // needs no scratch.
  kernels::attention_backward(*core_, l.hbm(op.dq.data, op.dq.dtype, {N, width}, "dqkv"),
                              l.optional(op.dsinks, "dsinks", {1, H}), l.hbm(op.dout, "dout"),
                              l.hbm(op.q.data, op.q.dtype, {N, width}, "qkv"),
                              l.hbm(op.record.data, DType::kF32, {N * H}, "lse"),
                              l.optional(op.sinks, "sinks", {1, H}),
                              attention_shape(spec, op.batch, op.seq), compute_);
  l.finish();
}

void NeuronSimBackend::run(const ops::AttentionDecode& op) {
  const ops::AttentionSpec& spec = op.spec;
  const Tensor& cache = op.k_cache;
  const bool cache_ok = cache.rank == 4 && cache.shape[1] == spec.heads &&
                        cache.shape[3] == spec.head_dim && cache.is_contiguous() &&
                        op.v_cache.rank == 4 && op.v_cache.shape == cache.shape &&
                        op.v_cache.is_contiguous() && op.v_cache.dtype == cache.dtype;
  const int64_t B = cache_ok ? cache.shape[0] : 0, max_T = cache_ok ? cache.shape[2] : 0;
  const int64_t C = int64_t{spec.heads} * spec.head_dim;
  const bool native = cache_ok && B > 0 && plain_multi_head(spec) &&
                      packed_qkv(op.q, op.k, op.v, B, spec) &&
                      dense_rows(op.out, B, C, op.q.dtype);
  if (!native) return run_on_host(op);
  check_operand_dtypes(op);
  const std::string at = op_label("attention_decode");
  require(op.pos >= 0 && op.pos < max_T, "{}: position {} is outside the KV cache [0, {})", at,
          op.pos, max_T);
  const int64_t cache_rows = B * spec.heads * max_T;
  Launch l(*core_);
  kernels::attention_decode(*core_, l.hbm(op.out, "out"),
                            l.hbm(op.q.data, op.q.dtype, {B, 3 * C}, "qkv"),
                            l.hbm(op.k_cache, "k_cache", {cache_rows, spec.head_dim}),
                            l.hbm(op.v_cache, "v_cache", {cache_rows, spec.head_dim}),
                            static_cast<int>(B), op.pos, static_cast<int>(max_T),
                            static_cast<int>(C), spec.heads, compute_);
  l.finish();
}

// ---- the paged KV cache ----

void NeuronSimBackend::run(const ops::KvCacheWrite& op) {
  const Tensor& cache = op.k_cache;
  const int64_t N = op.slots.numel();
  const int64_t KV = cache.rank == 4 ? cache.shape[2] : 0, hd = cache.rank == 4 ? cache.shape[3] : 0;
  const bool native = paged_cache(cache, KV, hd) && paged_cache(op.v_cache, KV, hd) &&
                      op.v_cache.shape == cache.shape && op.v_cache.dtype == cache.dtype &&
                      cache.shape[0] * cache.shape[1] <= kMaxCacheRows &&
                      dense_heads(op.k, N, KV, hd) && dense_heads(op.v, N, KV, hd);
  if (!native) return run_on_host(op);
  check_operand_dtypes(op);
  const std::string at = op_label("kv_cache_write");
  require_elements(at, op.slots, N, "slots");
  const int64_t capacity = cache.shape[0] * cache.shape[1];
  const int32_t* slots = op.slots.as<const int32_t>();
  for (int64_t n = 0; n < N; ++n) {
    require(slots[n] < capacity, "{}: slot {} of row {} is beyond the cache's {}", at, slots[n], n,
            capacity);
  }
  if (N == 0) return;
  const int64_t W = KV * hd;
  Launch l(*core_);
  kernels::kv_cache_write(*core_, l.hbm(op.k_cache, "k_cache", {capacity, W}),
                          l.hbm(op.v_cache, "v_cache", {capacity, W}),
                          strided_rows(l, op.k, N, W, op.k.strides[0], "k"),
                          strided_rows(l, op.v, N, W, op.v.strides[0], "v"),
                          l.hbm(op.slots, "slots", {N, 1}));
  l.finish();
}

void NeuronSimBackend::run(const ops::PagedAttention& op) {
  const ops::AttentionSpec& spec = op.spec;
  const std::string at = op_label("paged_attention");
  require(spec.heads > 0 && spec.kv_heads > 0 && spec.head_dim > 0 &&
              spec.heads % spec.kv_heads == 0 && spec.window >= 0,
          "{}: heads {} must be a positive multiple of kv_heads {}, head_dim {} positive and "
          "window {} >= 0",
          at, spec.heads, spec.kv_heads, spec.head_dim, spec.window);
  const int64_t H = spec.heads, KV = spec.kv_heads, hd = spec.head_dim;
  const int64_t N = op.q.rank > 0 ? op.q.shape[0] : 0;
  const Tensor& cache = op.k_cache;
  kernels::PagedAttentionShape shape{.heads = spec.heads, .kv_heads = spec.kv_heads,
                                     .head_dim = spec.head_dim,
                                     .block_size = cache.rank == 4 ? static_cast<int>(cache.shape[1]) : 0,
                                     .window = spec.window, .scale = spec.effective_scale()};
  const bool native =
      hd <= kPartitions && shape.scale > 0.0f && paged_cache(cache, KV, hd) &&
      paged_cache(op.v_cache, KV, hd) && op.v_cache.shape == cache.shape &&
      cache.shape[1] <= 256 && cache.shape[0] * cache.shape[1] <= kMaxCacheRows &&
      dense_heads(op.q, N, H, hd) && op.out.rank == 2 && op.out.shape[0] == N &&
      op.out.shape[1] == H * hd && op.out.strides[1] == 1 && op.out.strides[0] >= H * hd &&
      kernels::paged_attention_sbuf_bytes(shape, compute_) <= core_->sbuf_largest_free();
  if (!native) return run_on_host(op);
  check_operand_dtypes(op);
  // The sequences' lengths size the launch; every block a query will read must be in the cache.
  require(op.block_tables.rank == 2 && op.block_tables.is_contiguous(),
          "{}: block_tables must be a dense [sequences, blocks] tensor, got {}", at,
          op.block_tables.describe());
  const int64_t S = op.block_tables.shape[0], max_blocks = op.block_tables.shape[1];
  require_elements(at, op.query_start, S + 1, "query_start");
  require_elements(at, op.context_len, S, "context_len");
  if (!op.sinks.empty()) require_elements(at, op.sinks, H, "sinks");
  const int32_t* tables = op.block_tables.as<const int32_t>();
  const int32_t* starts = op.query_start.as<const int32_t>();
  const int32_t* contexts = op.context_len.as<const int32_t>();
  const int64_t bs = cache.shape[1], blocks = cache.shape[0];
  require(starts[0] == 0 && starts[S] == N, "{}: query_start must run from 0 to {} rows, got {} to {}",
          at, N, starts[0], starts[S]);
  std::vector<kernels::PagedSequence> sequences(S);
  for (int64_t s = 0; s < S; ++s) {
    const int64_t rows = starts[s + 1] - starts[s], ctx = contexts[s];
    require(rows >= 0 && ctx >= rows && ctx <= max_blocks * bs,
            "{}: sequence {} has {} query rows and a context of {} (at most {})", at, s, rows, ctx,
            max_blocks * bs);
    sequences[s] = {.first_row = starts[s], .rows = rows, .context = ctx};
    if (rows == 0) continue;
    const int64_t first = ctx - rows;
    const int64_t lo = spec.window > 0 ? std::max<int64_t>(0, first - spec.window + 1) : 0;
    for (int64_t blk = lo / bs; blk <= (ctx - 1) / bs; ++blk) {
      const int32_t id = tables[s * max_blocks + blk];
      require(id >= 0 && id < blocks,
              "{}: sequence {} needs block {} of its table, which holds {} (the cache has {} "
              "blocks)",
              at, s, blk, id, blocks);
    }
  }
  if (N == 0) return;
  Launch l(*core_);
  kernels::paged_attention(
      *core_, strided_rows(l, op.out, N, H * hd, op.out.strides[0], "out"),
      strided_rows(l, op.q, N, H * hd, op.q.strides[0], "q"),
      l.hbm(op.k_cache, "k_cache", {blocks * bs, KV * hd}),
      l.hbm(op.v_cache, "v_cache", {blocks * bs, KV * hd}),
      l.hbm(op.block_tables, "block_tables", {S, max_blocks}), l.optional(op.sinks, "sinks", {1, H}),
      sequences, shape, compute_);
  l.finish();
}

// ---- loss ----

void NeuronSimBackend::run(const ops::CrossEntropy& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("cross_entropy");
  require_matrix(at, op.logits, -1, -1, "logits");
  const int64_t N = op.logits.shape[0], V = op.logits.shape[1];
  require(V > 0, "{}: logits must have a vocabulary, got {}", at, op.logits.describe());
  require_elements(at, op.losses, N, "losses");
  require_elements(at, op.targets, N, "targets");
  if (N == 0) return;
  Launch l(*core_);
  // The kernel checks every target against V.
  kernels::cross_entropy_forward(*core_, l.hbm(op.losses, "losses", {N}),
                                 l.hbm(op.logits, "logits"), l.hbm(op.targets, "targets", {N, 1}),
                                 static_cast<int>(N), static_cast<int>(V), compute_);
  l.finish();
}

void NeuronSimBackend::run(const ops::CrossEntropyBackward& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("cross_entropy_backward");
  require_matrix(at, op.logits, -1, -1, "logits");
  const int64_t N = op.logits.shape[0], V = op.logits.shape[1];
  require(V > 0, "{}: logits must have a vocabulary, got {}", at, op.logits.describe());
  require_matrix(at, op.dlogits, N, V, "dlogits");
  require_elements(at, op.targets, N, "targets");
  if (N == 0) return;
  Launch l(*core_);
  // dlogits may be logits itself: the launch then presents one tensor, read before it is written.
  const View logits = l.hbm(op.logits, "logits");
  kernels::cross_entropy_backward(*core_, l.hbm(op.dlogits, "dlogits"), logits,
                                  l.hbm(op.targets, "targets", {N, 1}), op.dloss,
                                  static_cast<int>(N), static_cast<int>(V), compute_);
  l.finish();
}

// ---- optimizer and step statistics: sums come back to the host, as the kernels return them ----

void NeuronSimBackend::run(const ops::SumOfSquares& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("sum_of_squares");
  require_elements(at, op.total, 1, "total");
  require_dense(at, op.x, "x");
  double sum = 0.0;
  if (op.x.numel() > 0) {
    Launch l(*core_);
    sum = kernels::sum_of_squares(*core_, l.hbm(op.x, "x", {op.x.numel()}));
    l.finish();
  }
  *op.total.as<double>() = sum;
}

void NeuronSimBackend::run(const ops::AccumulateSum& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("accumulate_sum");
  require_elements(at, op.total, 1, "total");
  require_dense(at, op.x, "x");
  double sum = 0.0;
  if (op.x.numel() > 0) {
    Launch l(*core_);
    sum = kernels::sum_of_elements(*core_, l.hbm(op.x, "x", {op.x.numel()}));
    l.finish();
  }
  *op.total.as<double>() += op.scale * sum;
}

void NeuronSimBackend::run(const ops::AdamW& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("adamw");
  const int64_t N = op.params.numel();
  require_elements(at, op.params, N, "params");
  require_elements(at, op.grads, N, "grads");
  require_elements(at, op.m, N, "m");
  require_elements(at, op.v, N, "v");
  if (!op.params_copy.empty()) require_elements(at, op.params_copy, N, "params_copy");
  ops::AdamWStep step = op.step;
  if (!op.grad_sum_of_squares.empty()) {
    // Global-norm clipping from the sum of squares in device memory (which the host can read).
    require_elements(at, op.grad_sum_of_squares, 1, "grad_sum_of_squares");
    const double sum = *op.grad_sum_of_squares.as<const double>();
    step.grad_scale *= clip_scale(global_norm(sum), op.clip);
  }
  if (N == 0) return;
  Launch l(*core_);
  kernels::adamw_update(*core_, l.hbm(op.params, "params", {N}), l.hbm(op.grads, "grads", {N}),
                        l.hbm(op.m, "m", {N}), l.hbm(op.v, "v", {N}), N, step,
                        l.optional(op.params_copy, "params_copy", {N}));
  l.finish();
}

}  // namespace switchyard::backend::neuron
