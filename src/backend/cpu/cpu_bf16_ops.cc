// CpuBf16Backend's native ops: the linear layers' products in bf16 through oneDNN. Operands in
// other forms (an fp32 weight of a frozen checkpoint) take the fp32 reference over widened copies,
// as every other op does (cpu_bf16_backend.h).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/bf16_dot_linear.h"
#include "backend/cpu/bf16_rows.h"
#include "backend/cpu/blocked_weights.h"
#include "backend/cpu/cpu_bf16_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/mxfp4_bf16_gemm.h"
#include "backend/cpu/operand_checks.h"
#include "backend/cpu/thread_adapter.h"
#include "backend/cpu/windowed_attention.h"
#include "backend/host_fallback.h"

namespace switchyard::backend::cpu {
namespace {

bool is_bf16(const Tensor& t) { return t.dtype == DType::kBF16; }
// An optional fp32 operand (bias, dbias) absent or present.
bool absent_or_f32(const Tensor& t) { return t.empty() || t.dtype == DType::kF32; }

const uint16_t* bf16(const Tensor& t, const char* op, const char* what) {
  return dense<const uint16_t>(t, DType::kBF16, op, what);
}

// The forms run natively here, by operand dtypes in for_each_tensor order.
bool native_linear(std::span<const DType> d) {  // out, inp, weight, bias
  return d.size() == 4 && d[0] == DType::kBF16 && d[1] == DType::kBF16 && d[2] == DType::kBF16 &&
         d[3] == DType::kF32;
}
bool native_linear_backward(std::span<const DType> d) {  // dinp, dweight, dbias, dout, inp, weight
  return d.size() == 6 && d[0] == DType::kBF16 && d[1] == DType::kF32 && d[2] == DType::kF32 &&
         d[3] == DType::kBF16 && d[4] == DType::kBF16 && d[5] == DType::kBF16;
}

// out, q, k_cache, v_cache, block_tables, query_start, context_len, sinks (ops.h PagedAttention)
bool paged_in_bf16(std::span<const DType> d) {
  return d.size() == 8 && d[0] == DType::kBF16 && d[1] == DType::kBF16 && d[2] == DType::kBF16 &&
         d[3] == DType::kBF16 && d[4] == DType::kI32 && d[5] == DType::kI32 &&
         d[6] == DType::kI32 && d[7] == DType::kF32;
}

// out, record, q, k, v, sinks (ops.h Attention)
bool attention_in_bf16(std::span<const DType> d) {
  return d.size() == 6 && d[0] == DType::kBF16 && d[1] == DType::kF32 && d[2] == DType::kBF16 &&
         d[3] == DType::kBF16 && d[4] == DType::kBF16 && d[5] == DType::kF32;
}

// dq, dk, dv, dsinks, scratch, dout, out, record, q, k, v, sinks (ops.h AttentionBackward); out
// is not read here, so it may be absent.
bool attention_backward_in_bf16(std::span<const DType> d) {
  if (d.size() != 12) return false;
  for (size_t i : {0, 1, 2, 5, 8, 9, 10}) {
    if (d[i] != DType::kBF16) return false;
  }
  return d[3] == DType::kF32 && d[4] == DType::kF32 &&
         (d[6] == DType::kBF16 || d[6] == DType::kF32) && d[7] == DType::kF32 &&
         d[11] == DType::kF32;
}

// out, ids, table, position_ids, position_table, table_low, position_low (ops.h Embedding): bf16
// rows from bf16 tables, held as fp32 halves (a trained model's: the low halves u16) or as bf16
// alone (a frozen checkpoint's, low halves absent); the position table absent or in the table's
// form.
bool embedding_of_bf16_tables(std::span<const DType> d) {
  if (d.size() != 7 || d[0] != DType::kBF16 || d[1] != DType::kI32 || d[2] != DType::kBF16 ||
      (d[5] != DType::kU16 && d[5] != DType::kF32)) {
    return false;
  }
  const bool no_positions = d[3] == DType::kF32 && d[4] == DType::kF32 && d[6] == DType::kF32;
  return no_positions || (d[3] == DType::kI32 && d[4] == DType::kBF16 && d[6] == d[5]);
}

// dbias[OC] += column sums of dout[N, OC] (bf16), in fp32 (`=` when overwrite): threads take blocks
// of columns, so each sum runs down its rows in order.
void bias_backward(float* dbias, const uint16_t* dout, int N, int OC, bool overwrite) {
  constexpr int kBlock = 256;
  const int blocks = (OC + kBlock - 1) / kBlock;
  SWITCHYARD_OMP_FOR(schedule(static) if (static_cast<size_t>(N) * OC > kParallelThreshold))
  for (int blk = 0; blk < blocks; ++blk) {
    const int o0 = blk * kBlock, o1 = std::min(OC, o0 + kBlock);
    float sums[kBlock] = {};
    for (int n = 0; n < N; ++n) {
      const uint16_t* d = dout + static_cast<size_t>(n) * OC;
      SWITCHYARD_OMP(omp simd)
      for (int o = o0; o < o1; ++o) sums[o - o0] += widen_bf16_bits(d[o]);  // inline: vectorises
    }
    for (int o = o0; o < o1; ++o) dbias[o] = overwrite ? sums[o - o0] : dbias[o] + sums[o - o0];
  }
}

// Runs row_fn(n, row) for every row of bf16 logits [N, V], `row` the row widened to fp32 in the
// thread's own buffer (V floats: logits are the largest activations, too large to widen whole).
template <typename RowFn>
void for_each_widened_row(const uint16_t* logits, int N, int V, RowFn&& row_fn) {
  for_each_row(N, V, 1, [&](int n, float* row) {
    widen_bf16_row(logits + static_cast<size_t>(n) * V, row, static_cast<size_t>(V));
    row_fn(n, row);
  });
}

// The loss ops' operands: logits [N, V] and N targets in [0, V).
struct LossOperands {
  int N = 0, V = 0;
  const int32_t* targets = nullptr;
};

LossOperands loss_operands(const Tensor& logits, const Tensor& targets, const char* name) {
  require_matrix(logits, -1, -1, name, "logits");
  const int64_t N = logits.shape[0], V = logits.shape[1];
  require(V > 0, "cpu-bf16 {}: logits must have a vocabulary, got {}", name, logits.describe());
  require_numel(targets, N, name, "targets");
  const int32_t* ids = i32(targets, name, "targets");
  require_ids(ids, N, V, name, "target");
  return {to_int(N, name, "logits"), to_int(V, name, "logits"), ids};
}

// An expert's product through oneDNN's bf16 matmul, over bf16 weights or MXFP4 ones decoded a
// panel at a time.
void expert_product(uint16_t* out, const uint16_t* inp, const WeightMatrix& weight,
                    const float* bias, int rows, int C, int OC) {
  if (weight.dtype == DType::kMXFP4) {
    mxfp4_bf16_gemm(out, inp, weight, bias, rows, C, OC);
    return;
  }
  bf16_gemm(false, true, rows, OC, C, inp, C, static_cast<const uint16_t*>(weight.data), C, out,
            DType::kBF16, OC, false, bias);
}

// expert_product over the rows rounded up to a multiple of kExpertRowStep, through zero-padded
// copies. oneDNN builds (JIT-compiles) a matmul primitive for each row count and keeps it; a
// prompt's experts see a different row count almost every time. gpt-oss-20b's first 512-token
// prefill spent 6.7 s in its expert products unpadded, 5.9-6.2 s padded; once the primitives
// were built, 5.5 s unpadded against 5.1-5.5 s padded (the extra rows cost no measurable time).
constexpr int kExpertRowStep = 16;

void padded_expert_product(uint16_t* out, const uint16_t* inp, const WeightMatrix& weight,
                           const float* bias, int rows, int C, int OC) {
  const int padded = (rows + kExpertRowStep - 1) / kExpertRowStep * kExpertRowStep;
  if (padded == rows) {
    expert_product(out, inp, weight, bias, rows, C, OC);
    return;
  }
  thread_local std::vector<uint16_t> padded_inp, padded_out;
  const size_t inp_values = static_cast<size_t>(rows) * C;
  padded_inp.resize(static_cast<size_t>(padded) * C);
  std::copy(inp, inp + inp_values, padded_inp.begin());
  std::fill(padded_inp.begin() + inp_values, padded_inp.end(), uint16_t{0});  // the extra rows
  padded_out.resize(static_cast<size_t>(padded) * OC);
  expert_product(padded_out.data(), padded_inp.data(), weight, bias, padded, C, OC);
  std::copy(padded_out.begin(), padded_out.begin() + static_cast<size_t>(rows) * OC, out);
}

}  // namespace

bool CpuBf16Backend::supports(OpKind kind, std::span<const DType> dtypes) const {
  if (host_.supports(kind, dtypes)) return true;
  if (kind == OpKind::kLinear) return native_linear(dtypes);
  if (kind == OpKind::kLinearBackward) return native_linear_backward(dtypes);
  if (kind == OpKind::kKvCacheWrite) {  // k_cache, v_cache, k, v, slots
    return dtypes.size() == 5 && std::all_of(dtypes.begin(), dtypes.begin() + 4, [](DType d) {
             return d == DType::kBF16;
           }) && dtypes[4] == DType::kI32;
  }
  if (kind == OpKind::kPagedAttention) return paged_in_bf16(dtypes);
  if (kind == OpKind::kAttention) return attention_in_bf16(dtypes);
  if (kind == OpKind::kAttentionBackward) return attention_backward_in_bf16(dtypes);
  if (kind == OpKind::kEmbedding) return embedding_of_bf16_tables(dtypes);
  if (kind == OpKind::kExpertLinear) {  // out, inp, weight, bias, offsets: bf16 or MXFP4 weights
    // MXFP4 only with the decoding kernel: without it, a decoded token would decode whole panels
    // for oneDNN, where the fp32 reference streams the blocks once.
    const bool weights = dtypes.size() == 5 && (dtypes[2] == DType::kBF16 ||
                                                (dtypes[2] == DType::kMXFP4 &&
                                                 bf16_dot_linear_available()));
    return weights && dtypes[0] == DType::kBF16 && dtypes[1] == DType::kBF16 &&
           dtypes[3] == DType::kF32 && dtypes[4] == DType::kI32;
  }
  if (native_rowwise(kind, dtypes)) return true;
  if (kind == OpKind::kCrossEntropy) {  // losses, logits, targets
    return dtypes.size() == 3 && dtypes[0] == DType::kF32 && dtypes[1] == DType::kBF16 &&
           dtypes[2] == DType::kI32;
  }
  if (kind == OpKind::kCrossEntropyBackward) {  // dlogits, logits, targets, losses (optional)
    return dtypes.size() == 4 && dtypes[0] == DType::kBF16 && dtypes[1] == DType::kBF16 &&
           dtypes[2] == DType::kI32 && dtypes[3] == DType::kF32;
  }
  return false;
}

// Rows of the bf16 tables, summed with the position table's in fp32 and rounded once: a frozen
// checkpoint's table is read where it lies (widening it whole, 1.2 GB for gpt-oss, would cost
// seconds a token).
void CpuBf16Backend::run(const ops::Embedding& op) {
  if (!supports(op)) {
    run_on_host(op);
    return;
  }
  const char* name = "embedding";
  const EmbeddingShape s = check_embedding(op);
  const std::optional<EmbeddingHalves> halves = embedding_halves(op);
  const EmbeddingHalves tables =
      halves ? *halves
             : EmbeddingHalves{.table = {.high = bf16(op.table, name, "table")},
                               .positions = {.high = op.position_table.empty()
                                                         ? nullptr
                                                         : bf16(op.position_table, name,
                                                                "position_table")}};
  embedding_forward_halves(nullptr, dense<uint16_t>(op.out, DType::kBF16, name, "out"), s.ids,
                           tables.table, s.position_ids, tables.positions, s.N, s.C);
}

// The cache's rows as they are: bf16 bits copied.
void CpuBf16Backend::run(const ops::KvCacheWrite& op) {
  if (!supports(op)) {
    run_on_host(op);
    return;
  }
  const KvCacheWriteShape shape = check_kv_cache_write(op, DType::kBF16);
  kv_cache_write(static_cast<uint16_t*>(op.k_cache.data), static_cast<uint16_t*>(op.v_cache.data),
                 static_cast<const uint16_t*>(op.k.data), op.k.strides[0],
                 static_cast<const uint16_t*>(op.v.data), op.v.strides[0],
                 static_cast<const int32_t*>(op.slots.data), shape.rows, shape.kv_heads,
                 shape.head_dim);
}

void CpuBf16Backend::run(const ops::Attention& op) {
  if (!supports(op)) {
    run_on_host(op);
    return;
  }
  adapt_threads();
  run_windowed_attention<uint16_t>(op, DType::kBF16,
                                   attention_record_floats(op.spec, op.batch, op.seq));
}

void CpuBf16Backend::run(const ops::AttentionBackward& op) {
  if (!supports(op)) {
    run_on_host(op);
    return;
  }
  adapt_threads();
  run_windowed_attention_backward<uint16_t>(op, DType::kBF16,
                                            attention_record_floats(op.spec, op.batch, op.seq));
}

// The fp32 kernel reading the bf16 cache in place (widening each key and value as it reads it):
// only the queries and the output, a few rows, pass through fp32 copies.
void CpuBf16Backend::run(const ops::PagedAttention& op) {
  if (!supports(op)) {
    run_on_host(op);
    return;
  }
  adapt_threads();
  PagedGeometry g = check_paged_attention(op, DType::kBF16);
  const int rows = static_cast<int>(op.q.shape[0]), width = g.heads * g.head_dim;
  const size_t values = static_cast<size_t>(rows) * width;
  scratch_.resize(2 * values);
  float* q = scratch_.data();
  float* out = q + values;
  for (int r = 0; r < rows; ++r) {
    bf16_to_float(static_cast<const uint16_t*>(op.q.data) + static_cast<size_t>(r) * g.ldq,
                  q + static_cast<size_t>(r) * width, static_cast<size_t>(width));
  }
  const int64_t ldo = g.ldo;
  g.ldq = g.ldo = width;
  paged_attention(out, q, static_cast<const uint16_t*>(op.k_cache.data),
                  static_cast<const uint16_t*>(op.v_cache.data),
                  static_cast<const int32_t*>(op.block_tables.data),
                  static_cast<const int32_t*>(op.query_start.data),
                  static_cast<const int32_t*>(op.context_len.data),
                  static_cast<const float*>(op.sinks.data), g, op.spec.effective_scale());
  for (int r = 0; r < rows; ++r) {
    float_to_bf16(out + static_cast<size_t>(r) * width,
                  static_cast<uint16_t*>(op.out.data) + static_cast<size_t>(r) * ldo,
                  static_cast<size_t>(width));
  }
}

// The fp32 kernels over one widened row at a time: the softmax and the loss in fp32, as in fp32
// mode, from logits stored as bf16.
void CpuBf16Backend::run(const ops::CrossEntropy& op) {
  if (!is_bf16(op.logits)) {
    run_on_host(op);
    return;
  }
  adapt_threads();
  const char* name = "cross_entropy";
  const LossOperands l = loss_operands(op.logits, op.targets, name);
  require_numel(op.losses, l.N, name, "losses");
  float* losses = f32(op.losses, name, "losses");
  for_each_widened_row(bf16(op.logits, name, "logits"), l.N, l.V, [&](int n, const float* row) {
    cross_entropy_forward(losses + n, row, l.targets + n, 1, l.V);
  });
}

void CpuBf16Backend::run(const ops::CrossEntropyBackward& op) {
  if (!is_bf16(op.logits) || !is_bf16(op.dlogits)) {
    run_on_host(op);
    return;
  }
  adapt_threads();
  const char* name = "cross_entropy_backward";
  const LossOperands l = loss_operands(op.logits, op.targets, name);
  require_matrix(op.dlogits, l.N, l.V, name, "dlogits");
  uint16_t* dlogits = const_cast<uint16_t*>(bf16(op.dlogits, name, "dlogits"));
  const float* losses = optional_f32(op.losses, name, "losses");
  if (losses) require_numel(op.losses, l.N, name, "losses");
  // The row is widened before its gradient is written, so dlogits may be logits itself.
  for_each_widened_row(bf16(op.logits, name, "logits"), l.N, l.V, [&](int n, float* row) {
    if (losses) {
      cross_entropy_backward_row_from_loss(row, row, l.targets[n], losses[n], op.dloss, l.V);
    } else {
      cross_entropy_backward(row, row, l.targets + n, op.dloss, 1, l.V);
    }
    narrow_bf16_row(row, dlogits + static_cast<size_t>(n) * l.V, static_cast<size_t>(l.V));
  });
}

void CpuBf16Backend::run(const ops::Linear& op) {
  if (!is_bf16(op.out) || !is_bf16(op.inp) || !is_bf16(op.weight) || !absent_or_f32(op.bias)) {
    run_on_host(op);
    return;
  }
  adapt_threads();
  const char* name = "linear";
  const auto [n, c, oc] = check_linear(op);
  const float* bias = optional_f32(op.bias, name, "bias");
  const uint16_t* inp = bf16(op.inp, name, "inp");
  const uint16_t* weight = bf16(op.weight, name, "weight");
  uint16_t* out = const_cast<uint16_t*>(bf16(op.out, name, "out"));
  if (n == 0 || oc == 0) return;
  if (n <= kGemvMaxRows && bf16_dot_linear_available()) {
    // Decoding: the weights streamed once through the bf16 dot-product instruction.
    bf16_dot_linear(out, inp, weight, bias, n, c, oc);
    return;
  }
  if (n <= kGemvMaxRows || c == 0) {
    // Decoding without that instruction: stream the bf16 weights once (the batch-invariant
    // product, which also takes empty rows) over the few rows widened to fp32.
    scratch_.resize(static_cast<size_t>(n) * (c + oc));
    float* wide_inp = scratch_.data();
    float* wide_out = wide_inp + static_cast<size_t>(n) * c;
    bf16_to_float(inp, wide_inp, static_cast<size_t>(n) * c);
    matmul_forward(wide_out, wide_inp, WeightMatrix{.dtype = DType::kBF16, .data = weight}, bias,
                   n, c, oc);
    float_to_bf16(wide_out, out, static_cast<size_t>(n) * oc);
    return;
  }
  // A continuous batch over weights that stay put: their blocked copy, where one can be kept.
  if (blocked_->linear(out, inp, weight, bias, n, c, oc, op.weight_stamp)) return;
  // out = inp @ weight^T: weight [OC, C] read as its transpose.
  bf16_gemm(false, true, n, oc, c, inp, c, weight, c, out, DType::kBF16, oc, false, bias);
}

// Each expert's rows against its bf16 or MXFP4 weights, as Linear multiplies: a few rows through
// the bf16 dot-product instruction (MXFP4 blocks decoded in registers), more through oneDNN's
// bf16 matmul (MXFP4 weights decoded a panel at a time), in row counts rounded up
// (padded_expert_product). Through the host fallback, bf16 experts would be widened whole every
// call.
void CpuBf16Backend::run(const ops::ExpertLinear& op) {
  if (!supports(op)) {
    run_on_host(op);
    return;
  }
  adapt_threads();
  const char* name = "expert_linear";
  const auto [E, C, OC, offsets] = check_expert_linear(op);
  const uint16_t* inp = bf16(op.inp, name, "inp");
  const WeightMatrix weight = weight_matrix(op.weight, name, "weight");
  uint16_t* out = const_cast<uint16_t*>(bf16(op.out, name, "out"));
  const float* bias = optional_f32(op.bias, name, "bias");
  for (int e = 0; e < E; ++e) {
    const int rows = offsets[e + 1] - offsets[e];
    if (rows == 0 || OC == 0) continue;
    const uint16_t* x = inp + static_cast<size_t>(offsets[e]) * C;
    const WeightMatrix w = weight.rows_from(static_cast<int64_t>(e) * OC, C);
    uint16_t* y = out + static_cast<size_t>(offsets[e]) * OC;
    const float* b = bias ? bias + static_cast<size_t>(e) * OC : nullptr;
    if (rows <= kGemvMaxRows && bf16_dot_linear_available()) {
      bf16_dot_linear(y, x, w, b, rows, C, OC);
    } else {
      padded_expert_product(y, x, w, b, rows, C, OC);
    }
  }
}

void CpuBf16Backend::run(const ops::LinearBackward& op) {
  if (!(op.dinp.empty() || is_bf16(op.dinp)) || op.dweight.dtype != DType::kF32 ||
      !absent_or_f32(op.dbias) || !is_bf16(op.dout) || !is_bf16(op.inp) || !is_bf16(op.weight)) {
    run_on_host(op);
    return;
  }
  adapt_threads();
  const char* name = "linear_backward";
  const auto [n, c, oc] = check_linear_backward(op);
  const uint16_t* dout = bf16(op.dout, name, "dout");
  float* dbias = optional_f32(op.dbias, name, "dbias");
  if (n == 0 || c == 0 || oc == 0) {  // empty products: a gradient keeps its value or becomes zeros
    zero_overwritten(op);
    if (dbias) bias_backward(dbias, dout, n, oc, false);  // dout's columns, none if N = 0
    return;
  }
  if (!op.dinp.empty()) {  // dinp[N, C] (+)= dout[N, OC] @ weight[OC, C]
    bf16_gemm(false, false, n, c, oc, dout, oc, bf16(op.weight, name, "weight"), c,
              const_cast<uint16_t*>(bf16(op.dinp, name, "dinp")), DType::kBF16, c,
              !op.overwrite_dinp, nullptr);
  }
  // dweight[OC, C] (+)= dout^T @ inp[N, C], into the fp32 gradient
  bf16_gemm(true, false, oc, c, n, dout, oc, bf16(op.inp, name, "inp"), c,
            f32(op.dweight, name, "dweight"), DType::kF32, c, !op.overwrite_param_grads, nullptr);
  if (dbias) bias_backward(dbias, dout, n, oc, op.overwrite_param_grads);
}

}  // namespace switchyard::backend::cpu
