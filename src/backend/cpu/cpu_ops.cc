// CpuBackend's ops: check the operands, then run the float kernels.
#include <cstring>

#include "backend/attention_operands.h"
#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/cpu_adamw.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/operand_checks.h"
#include "backend/cpu/thread_adapter.h"
#include "backend/cpu/windowed_attention.h"
#include "backend/gradient_clipping.h"
#include "core/error.h"

namespace switchyard::backend::cpu {
namespace {

// Row stride of an attention output [N, heads * head_dim].
int64_t output_stride(const Tensor& out, int64_t rows, int width, const char* op,
                      const char* what, DType dtype = DType::kF32) {
  require_dtype(out, dtype, op, what);
  require(out.rank == 2 && out.shape[0] == rows && out.shape[1] == width && out.strides[1] == 1,
          "cpu {}: {} must be [{}, {}] with dense rows, got {}", op, what, rows, width,
          out.describe());
  return out.strides[0];
}

AttentionGeometry geometry(const ops::AttentionSpec& spec, int batch, int seq, const Tensor& q,
                           const Tensor& k, const Tensor& v, int64_t ldo) {
  AttentionGeometry g;
  g.batch = batch;
  g.seq = seq;
  g.heads = spec.heads;
  g.kv_heads = spec.kv_heads;
  g.head_dim = spec.head_dim;
  g.window = spec.window;
  g.ldq = q.strides[0];
  g.ldk = k.strides[0];
  g.ldv = v.strides[0];
  g.ldo = ldo;
  return g;
}

// Where an op takes an inference model's weights as they are stored: the operand (in
// for_each_tensor order; -1 for none), and the dtypes besides fp32 it takes there. Products read
// bf16 and MXFP4 matrices, the embedding a bf16 table.
int inference_weight_operand(OpKind kind) {
  switch (kind) {
    case OpKind::kEmbedding:     // out, ids, table, position_ids, position_table
    case OpKind::kLinear:        // out, inp, weight, bias
    case OpKind::kExpertLinear:  // out, inp, weight, bias, offsets
      return 2;
    default:
      return -1;
  }
}

bool inference_weight_dtype(OpKind kind, DType d) {
  return d == DType::kBF16 || (d == DType::kMXFP4 && kind != OpKind::kEmbedding);
}

// Where an op takes a parameter held as fp32 halves (core/fp32_halves.h): its high halves are
// bf16, its low halves the u16 operands. AdamW's params (0) with params_low (6); the embedding's
// position table (4) with position_low (6), its table (2, a bf16 weight already) with table_low (5).
bool halves_operand(OpKind kind, size_t i, DType d) {
  if (kind == OpKind::kAdamW) return (i == 0 && d == DType::kBF16) || (i == 6 && d == DType::kU16);
  if (kind == OpKind::kEmbedding) {
    return (i == 4 && d == DType::kBF16) || ((i == 5 || i == 6) && d == DType::kU16);
  }
  return false;
}

}  // namespace

bool CpuBackend::supports(OpKind kind, std::span<const DType> dtypes) const {
  const int weight = inference_weight_operand(kind);
  for (size_t i = 0; i < dtypes.size(); ++i) {
    const DType d = dtypes[i];
    const bool ok = d == DType::kF32 || d == DType::kI32 || d == DType::kF64 ||
                    (d == DType::kBF16 && (kind == OpKind::kCast || kind == OpKind::kAdamW)) ||
                    (static_cast<int>(i) == weight && inference_weight_dtype(kind, d)) ||
                    halves_operand(kind, i, d);
    if (!ok) return false;
  }
  return true;
}

// ---- embeddings ----

void CpuBackend::run(const ops::Embedding& op) {
  const char* name = "embedding";
  const EmbeddingShape s = check_embedding(op);
  float* out = f32(op.out, name, "out");
  if (const auto halves = embedding_halves(op)) {  // a bf16 model's tables, as training keeps them
    embedding_forward_halves(out, nullptr, s.ids, halves->table, s.position_ids, halves->positions,
                             s.N, s.C);
    return;
  }
  const float* position_table =
      op.position_table.empty() ? nullptr : f32(op.position_table, name, "position_table");
  if (op.table.dtype == DType::kBF16) {  // an inference checkpoint's table, widened row by row
    embedding_forward_bf16(out, s.ids, dense<const uint16_t>(op.table, DType::kBF16, name, "table"),
                           s.position_ids, position_table, s.N, s.C);
    return;
  }
  embedding_forward(out, s.ids, f32(op.table, name, "table"), s.position_ids, position_table, s.N,
                    s.C);
}

void CpuBackend::run(const ops::EmbeddingBackward& op) {
  const char* name = "embedding_backward";
  require_matrix(op.dtable, -1, -1, name, "dtable");
  const int64_t N = op.ids.numel(), C = op.dtable.shape[1];
  require_matrix(op.dout, N, C, name, "dout");
  const int32_t* ids = i32(op.ids, name, "ids");
  require_ids(ids, N, op.dtable.shape[0], name, "id");
  const int32_t* position_ids = nullptr;
  float* dposition_table = optional_f32(op.dposition_table, name, "dposition_table");
  if (dposition_table) {
    require_matrix(op.dposition_table, -1, C, name, "dposition_table");
    position_ids = i32(op.position_ids, name, "position_ids");
    require_numel(op.position_ids, N, name, "position_ids");
    require_ids(position_ids, N, op.dposition_table.shape[0], name, "position");
  }
  embedding_backward(f32(op.dtable, name, "dtable"), dposition_table, f32(op.dout, name, "dout"),
                     ids, position_ids, to_int(N, name, "ids"), to_int(C, name, "dtable"));
}

// ---- normalisation ----

void CpuBackend::run(const ops::LayerNorm& op) {
  const char* name = "layernorm";
  const RowsShape s = check_layernorm(op);
  layernorm_forward(f32(op.out, name, "out"), f32(op.mean, name, "mean"),
                    f32(op.rstd, name, "rstd"), f32(op.inp, name, "inp"),
                    f32(op.weight, name, "weight"), f32(op.bias, name, "bias"), s.N, s.C,
                    op.epsilon);
}

void CpuBackend::run(const ops::LayerNormBackward& op) {
  const char* name = "layernorm_backward";
  const RowsShape s = check_layernorm_backward(op);
  layernorm_backward(f32(op.dinp, name, "dinp"), f32(op.dweight, name, "dweight"),
                     f32(op.dbias, name, "dbias"), f32(op.dout, name, "dout"),
                     f32(op.inp, name, "inp"), f32(op.weight, name, "weight"),
                     f32(op.mean, name, "mean"), f32(op.rstd, name, "rstd"), s.N, s.C);
}

void CpuBackend::run(const ops::AddLayerNorm& op) { Backend::run(op); }

// ---- linear layers ----

void CpuBackend::run(const ops::Linear& op) {
  adapt_threads();
  const char* name = "linear";
  const LinearShape s = check_linear(op);
  const WeightMatrix weight = weight_matrix(op.weight, name, "weight");
  if (weight.dtype != DType::kF32) {  // inference weights: always the batch-invariant product
    matmul_forward(f32(op.out, name, "out"), f32(op.inp, name, "inp"), weight,
                   optional_f32(op.bias, name, "bias"), s.N, s.C, s.OC);
    return;
  }
  matmul_forward(f32(op.out, name, "out"), f32(op.inp, name, "inp"),
                 f32(op.weight, name, "weight"), optional_f32(op.bias, name, "bias"), s.N, s.C,
                 s.OC, op.batch_invariant);
}

void CpuBackend::run(const ops::LinearBackward& op) {
  adapt_threads();
  const char* name = "linear_backward";
  const float* weight = trainable_weight(op.weight, name, "weight");
  const LinearShape s = check_linear_backward(op);
  matmul_backward(optional_f32(op.dinp, name, "dinp"), f32(op.dweight, name, "dweight"),
                  optional_f32(op.dbias, name, "dbias"), f32(op.dout, name, "dout"),
                  f32(op.inp, name, "inp"), weight, s.N, s.C, s.OC,
                  {.dinp = op.overwrite_dinp, .params = op.overwrite_param_grads});
}

void CpuBackend::run(const ops::LinearGelu& op) { Backend::run(op); }

// ---- elementwise ----

void CpuBackend::run(const ops::Gelu& op) {
  require_numel(op.out, op.inp.numel(), "gelu", "out");
  gelu_forward(f32(op.out, "gelu", "out"), f32(op.inp, "gelu", "inp"),
               static_cast<size_t>(op.inp.numel()));
}

void CpuBackend::run(const ops::GeluBackward& op) {
  const char* name = "gelu_backward";
  require_numel(op.dinp, op.inp.numel(), name, "dinp");
  require_numel(op.dout, op.inp.numel(), name, "dout");
  gelu_backward(f32(op.dinp, name, "dinp"), f32(op.inp, name, "inp"), f32(op.dout, name, "dout"),
                static_cast<size_t>(op.inp.numel()));
}

void CpuBackend::run(const ops::Add& op) {
  require_numel(op.b, op.a.numel(), "add", "b");
  require_numel(op.out, op.a.numel(), "add", "out");
  residual_forward(f32(op.out, "add", "out"), f32(op.a, "add", "a"), f32(op.b, "add", "b"),
                   static_cast<size_t>(op.a.numel()));
}

void CpuBackend::run(const ops::Accumulate& op) {
  require_numel(op.dst, op.src.numel(), "accumulate", "dst");
  accumulate(f32(op.dst, "accumulate", "dst"), f32(op.src, "accumulate", "src"),
             static_cast<size_t>(op.src.numel()));
}

void CpuBackend::run(const ops::Cast& op) {
  const char* name = "cast";
  require_numel(op.out, op.inp.numel(), name, "out");
  require(op.out.is_contiguous() && op.inp.is_contiguous(), "cpu cast: operands must be dense");
  const size_t n = static_cast<size_t>(op.inp.numel());
  if (op.out.dtype == op.inp.dtype && (op.out.dtype == DType::kF32 || op.out.dtype == DType::kBF16)) {
    std::memcpy(op.out.data, op.inp.data, op.out.bytes());
    return;
  }
  if (op.inp.dtype == DType::kF32 && op.out.dtype == DType::kBF16) {
    float_to_bf16(static_cast<const float*>(op.inp.data), static_cast<uint16_t*>(op.out.data), n);
    return;
  }
  if (op.inp.dtype == DType::kBF16 && op.out.dtype == DType::kF32) {
    bf16_to_float(static_cast<const uint16_t*>(op.inp.data), static_cast<float*>(op.out.data), n);
    return;
  }
  fail("cpu cast: from {} to {} is not supported (fp32 and bf16 only)", op.inp.describe(),
       op.out.describe());
}

// ---- attention ----

AttentionOperands check_attention(const ops::Attention& op, DType dtype, size_t record_floats) {
  const char* name = "attention";
  require_attention_spec(op.spec, "cpu", name);
  const int64_t N = static_cast<int64_t>(op.batch) * op.seq;
  const int H = op.spec.heads, KV = op.spec.kv_heads, hd = op.spec.head_dim;
  require_heads_view(op.q, N, H, hd, name, "q", dtype);
  require_heads_view(op.k, N, KV, hd, name, "k", dtype);
  require_heads_view(op.v, N, KV, hd, name, "v", dtype);
  const int64_t ldo = output_stride(op.out, N, H * hd, name, "out", dtype);
  require(op.record.numel() >= static_cast<int64_t>(record_floats),
          "cpu attention: the record must hold [batch, heads, seq, seq] fp32, got {}",
          op.record.describe());
  f32(op.record, name, "record");
  const float* sinks = optional_f32(op.sinks, name, "sinks");
  if (sinks) require_numel(op.sinks, H, name, "sinks");
  return {geometry(op.spec, op.batch, op.seq, op.q, op.k, op.v, ldo), sinks, nullptr};
}

AttentionOperands check_attention_backward(const ops::AttentionBackward& op, DType dtype,
                                           size_t record_floats) {
  const char* name = "attention_backward";
  require_attention_spec(op.spec, "cpu", name);
  const int64_t N = static_cast<int64_t>(op.batch) * op.seq;
  const int H = op.spec.heads, KV = op.spec.kv_heads, hd = op.spec.head_dim;
  require_heads_view(op.q, N, H, hd, name, "q", dtype);
  require_heads_view(op.k, N, KV, hd, name, "k", dtype);
  require_heads_view(op.v, N, KV, hd, name, "v", dtype);
  require_heads_view(op.dq, N, H, hd, name, "dq", dtype);
  require_heads_view(op.dk, N, KV, hd, name, "dk", dtype);
  require_heads_view(op.dv, N, KV, hd, name, "dv", dtype);
  require(op.dq.strides[0] == op.q.strides[0] && op.dk.strides[0] == op.k.strides[0] &&
              op.dv.strides[0] == op.v.strides[0],
          "cpu attention_backward: dq, dk, dv must be laid out as q, k, v");
  const int64_t ldo = output_stride(op.dout, N, H * hd, name, "dout", dtype);
  require(op.record.numel() >= static_cast<int64_t>(record_floats) &&
              op.scratch.numel() >= static_cast<int64_t>(record_floats),
          "cpu attention_backward: record and scratch must hold [batch, heads, seq, seq] fp32");
  f32(op.record, name, "record");
  f32(op.scratch, name, "scratch");
  const float* sinks = optional_f32(op.sinks, name, "sinks");
  float* dsinks = optional_f32(op.dsinks, name, "dsinks");
  require(!sinks || (op.sinks.numel() == H && dsinks && op.dsinks.numel() == H),
          "cpu attention_backward: sinks and dsinks must both hold {} values", H);
  return {geometry(op.spec, op.batch, op.seq, op.q, op.k, op.v, ldo), sinks, dsinks};
}

void CpuBackend::run(const ops::Attention& op) {
  adapt_threads();
  run_windowed_attention<float>(op, DType::kF32,
                                attention_record_floats(op.spec, op.batch, op.seq));
}

void CpuBackend::run(const ops::AttentionBackward& op) {
  adapt_threads();
  run_windowed_attention_backward<float>(op, DType::kF32,
                                         attention_record_floats(op.spec, op.batch, op.seq));
}

void CpuBackend::run(const ops::AttentionDecode& op) {
  adapt_threads();
  const char* name = "attention_decode";
  require_attention_spec(op.spec, "cpu", name);
  require(op.spec.heads == op.spec.kv_heads && op.spec.window == 0,
          "cpu attention_decode: the dense cache is for full multi-head attention");
  const int H = op.spec.heads, hd = op.spec.head_dim;
  require(op.k_cache.rank == 4 && op.k_cache.shape[1] == H && op.k_cache.shape[3] == hd,
          "cpu attention_decode: k_cache must be [B, {}, max_seq, {}], got {}", H, hd,
          op.k_cache.describe());
  const int64_t B = op.k_cache.shape[0], max_T = op.k_cache.shape[2];
  require_heads_view(op.q, B, H, hd, name, "q");
  require_heads_view(op.k, B, H, hd, name, "k");
  require_heads_view(op.v, B, H, hd, name, "v");
  require_numel(op.v_cache, op.k_cache.numel(), name, "v_cache");
  require(op.pos >= 0 && op.pos < max_T, "cpu attention_decode: position {} is outside the KV cache [0, {})",
          op.pos, max_T);
  const int64_t ldo = output_stride(op.out, B, H * hd, name, "out");
  attention_decode(static_cast<float*>(op.out.data), ldo, static_cast<const float*>(op.q.data),
                   op.q.strides[0], static_cast<const float*>(op.k.data), op.k.strides[0],
                   static_cast<const float*>(op.v.data), op.v.strides[0],
                   f32(op.k_cache, name, "k_cache"), f32(op.v_cache, name, "v_cache"),
                   to_int(B, name, "q"), op.pos, to_int(max_T, name, "k_cache"), H, hd);
}

namespace {

// [blocks, block_size, kv_heads, head_dim]
void require_cache(const Tensor& cache, int kv_heads, int head_dim, const char* op,
                   const char* what, DType dtype) {
  require(cache.rank == 4 && cache.shape[2] == kv_heads && cache.shape[3] == head_dim &&
              cache.shape[1] > 0 && cache.shape[1] <= 256,
          "cpu {}: {} must be [blocks, block_size <= 256, {}, {}], got {}", op, what, kv_heads,
          head_dim, cache.describe());
  dense<void>(cache, dtype, op, what);
}

}  // namespace

KvCacheWriteShape check_kv_cache_write(const ops::KvCacheWrite& op, DType dtype) {
  const char* name = "kv_cache_write";
  require(op.k_cache.rank == 4, "cpu kv_cache_write: k_cache must be 4-D, got {}",
          op.k_cache.describe());
  const int KV = static_cast<int>(op.k_cache.shape[2]), hd = static_cast<int>(op.k_cache.shape[3]);
  require_cache(op.k_cache, KV, hd, name, "k_cache", dtype);
  require_cache(op.v_cache, KV, hd, name, "v_cache", dtype);
  require(op.v_cache.shape[0] == op.k_cache.shape[0] && op.v_cache.shape[1] == op.k_cache.shape[1],
          "cpu kv_cache_write: k_cache and v_cache differ");
  const int64_t N = op.slots.numel();
  require_heads_view(op.k, N, KV, hd, name, "k", dtype);
  require_heads_view(op.v, N, KV, hd, name, "v", dtype);
  const int32_t* slots = i32(op.slots, name, "slots");
  const int64_t capacity = op.k_cache.shape[0] * op.k_cache.shape[1];
  for (int64_t n = 0; n < N; ++n) {
    require(slots[n] < capacity, "cpu kv_cache_write: slot {} of row {} is beyond the cache's {}",
            slots[n], n, capacity);
  }
  return {to_int(N, name, "slots"), KV, hd};
}

void CpuBackend::run(const ops::KvCacheWrite& op) {
  const KvCacheWriteShape shape = check_kv_cache_write(op, DType::kF32);
  kv_cache_write(static_cast<float*>(op.k_cache.data), static_cast<float*>(op.v_cache.data),
                 static_cast<const float*>(op.k.data), op.k.strides[0],
                 static_cast<const float*>(op.v.data), op.v.strides[0],
                 static_cast<const int32_t*>(op.slots.data), shape.rows, shape.kv_heads,
                 shape.head_dim);
}

PagedGeometry check_paged_attention(const ops::PagedAttention& op, DType dtype) {
  const char* name = "paged_attention";
  require_attention_spec(op.spec, "cpu", name);
  const int H = op.spec.heads, KV = op.spec.kv_heads, hd = op.spec.head_dim;
  require_cache(op.k_cache, KV, hd, name, "k_cache", dtype);
  require_cache(op.v_cache, KV, hd, name, "v_cache", dtype);
  const int64_t N = op.q.rank > 0 ? op.q.shape[0] : 0;
  require_heads_view(op.q, N, H, hd, name, "q", dtype);
  const int64_t ldo = output_stride(op.out, N, H * hd, name, "out", dtype);
  require(op.block_tables.rank == 2, "cpu paged_attention: block_tables must be [sequences, "
          "blocks], got {}", op.block_tables.describe());
  const int S = to_int(op.block_tables.shape[0], name, "block_tables");
  const int max_blocks = to_int(op.block_tables.shape[1], name, "block_tables");
  const int32_t* tables = i32(op.block_tables, name, "block_tables");
  const int32_t* starts = i32(op.query_start, name, "query_start");
  const int32_t* contexts = i32(op.context_len, name, "context_len");
  require_numel(op.query_start, S + 1, name, "query_start");
  require_numel(op.context_len, S, name, "context_len");
  const int bs = static_cast<int>(op.k_cache.shape[1]);
  const int64_t blocks = op.k_cache.shape[0];
  require(starts[0] == 0 && starts[S] == N, "cpu paged_attention: query_start must run from 0 to {} "
          "rows, got {} to {}", N, starts[0], starts[S]);
  for (int s = 0; s < S; ++s) {
    const int rows = starts[s + 1] - starts[s], ctx = contexts[s];
    require(rows >= 0 && ctx >= rows && ctx <= static_cast<int64_t>(max_blocks) * bs,
            "cpu paged_attention: sequence {} has {} query rows and a context of {} (at most {})",
            s, rows, ctx, static_cast<int64_t>(max_blocks) * bs);
    if (rows == 0) continue;
    const int first = ctx - rows;
    const int lo = op.spec.window > 0 ? std::max(0, first - op.spec.window + 1) : 0;
    for (int blk = lo / bs; blk <= (ctx - 1) / bs; ++blk) {
      const int32_t id = tables[static_cast<size_t>(s) * max_blocks + blk];
      require(id >= 0 && id < blocks, "cpu paged_attention: sequence {} needs block {} of its "
              "table, which holds {} (the cache has {} blocks)", s, blk, id, blocks);
    }
  }
  if (optional_f32(op.sinks, name, "sinks")) require_numel(op.sinks, H, name, "sinks");
  PagedGeometry g;
  g.heads = H;
  g.kv_heads = KV;
  g.head_dim = hd;
  g.window = op.spec.window;
  g.block_size = bs;
  g.sequences = S;
  g.max_blocks = max_blocks;
  g.ldq = op.q.strides[0];
  g.ldo = ldo;
  return g;
}

void CpuBackend::run(const ops::PagedAttention& op) {
  adapt_threads();
  const PagedGeometry g = check_paged_attention(op, DType::kF32);
  paged_attention(static_cast<float*>(op.out.data), static_cast<const float*>(op.q.data),
                  static_cast<const float*>(op.k_cache.data),
                  static_cast<const float*>(op.v_cache.data),
                  static_cast<const int32_t*>(op.block_tables.data),
                  static_cast<const int32_t*>(op.query_start.data),
                  static_cast<const int32_t*>(op.context_len.data),
                  static_cast<const float*>(op.sinks.data), g, op.spec.effective_scale());
}

// ---- loss ----

void CpuBackend::run(const ops::CrossEntropy& op) {
  adapt_threads();
  const char* name = "cross_entropy";
  require_matrix(op.logits, -1, -1, name, "logits");
  const int64_t N = op.logits.shape[0], V = op.logits.shape[1];
  require(V > 0, "cpu cross_entropy: logits must have a vocabulary, got {}", op.logits.describe());
  require_numel(op.losses, N, name, "losses");
  require_numel(op.targets, N, name, "targets");
  const int32_t* targets = i32(op.targets, name, "targets");
  require_ids(targets, N, V, name, "target");
  cross_entropy_forward(f32(op.losses, name, "losses"), f32(op.logits, name, "logits"), targets,
                        to_int(N, name, "logits"), to_int(V, name, "logits"));
}

void CpuBackend::run(const ops::CrossEntropyBackward& op) {
  const char* name = "cross_entropy_backward";
  require_matrix(op.logits, -1, -1, name, "logits");
  const int64_t N = op.logits.shape[0], V = op.logits.shape[1];
  require(V > 0, "cpu cross_entropy_backward: logits must have a vocabulary, got {}",
          op.logits.describe());
  require_matrix(op.dlogits, N, V, name, "dlogits");
  require_numel(op.targets, N, name, "targets");
  const int32_t* targets = i32(op.targets, name, "targets");
  require_ids(targets, N, V, name, "target");
  cross_entropy_backward(f32(op.dlogits, name, "dlogits"), f32(op.logits, name, "logits"), targets,
                         op.dloss, to_int(N, name, "logits"), to_int(V, name, "logits"));
}

// ---- optimizer and step statistics ----

void CpuBackend::run(const ops::SumOfSquares& op) {
  double* total = dense<double>(op.total, DType::kF64, "sum_of_squares", "total");
  *total = sum_of_squares(f32(op.x, "sum_of_squares", "x"), static_cast<size_t>(op.x.numel()));
}

void CpuBackend::run(const ops::AccumulateSum& op) {
  double* total = dense<double>(op.total, DType::kF64, "accumulate_sum", "total");
  const float* x = f32(op.x, "accumulate_sum", "x");
  double sum = 0;
  for (int64_t i = 0; i < op.x.numel(); ++i) sum += x[i];
  *total += op.scale * sum;
}

void CpuBackend::run(const ops::AdamW& op) {
  adapt_threads();
  const char* name = "adamw";
  const ops::AdamWStep& step = op.step;
  require(step.step >= 1, "cpu adamw: step must be >= 1 (1-based), got {}", step.step);
  require(step.beta1 >= 0 && step.beta1 < 1 && step.beta2 >= 0 && step.beta2 < 1,
          "cpu adamw: betas must be in [0, 1), got {} and {}", step.beta1, step.beta2);
  const int64_t N = op.params.numel();
  for (const Tensor* t : {&op.grads, &op.m, &op.v}) require_numel(*t, N, name, "grads, m and v");
  const float* grads = f32(op.grads, name, "grads");
  float* m = f32(op.m, name, "m");
  float* v = f32(op.v, name, "v");
  float grad_scale = step.grad_scale;
  if (!op.grad_sum_of_squares.empty()) {
    const double* sum = dense<double>(op.grad_sum_of_squares, DType::kF64, name,
                                      "grad_sum_of_squares");
    grad_scale *= clip_scale(global_norm(*sum), op.clip);
  }
  const size_t n = static_cast<size_t>(N);
  if (!op.params_low.empty()) {  // parameters held as fp32 halves
    require(op.params_copy.empty(), "cpu {}: parameters held as halves need no params_copy", name);
    require_numel(op.params_low, N, name, "params_low");
    adamw_update_halves(dense<uint16_t>(op.params, DType::kBF16, name, "params (high halves)"),
                        dense<uint16_t>(op.params_low, DType::kU16, name, "params_low"), grads, m,
                        v, n, step.learning_rate, step.beta1, step.beta2, step.epsilon,
                        step.weight_decay, step.step, grad_scale);
    return;
  }
  float* params = f32(op.params, name, "params");
  // A bf16 weight copy (bf16 products' weights) is written in the update's own pass where it can.
  uint16_t* copy = nullptr;
  if (!op.params_copy.empty()) {
    require_numel(op.params_copy, N, name, "params_copy");
    if (op.params_copy.dtype == DType::kBF16 && op.params_copy.is_contiguous()) {
      copy = static_cast<uint16_t*>(op.params_copy.data);
    }
  }
  const bool streamed = adamw_update_streaming(params, grads, m, v, n, step.learning_rate,
                                               step.beta1, step.beta2, step.epsilon,
                                               step.weight_decay, step.step, grad_scale, copy);
  if (!streamed) {
    adamw_update(params, grads, m, v, n, step.learning_rate, step.beta1, step.beta2, step.epsilon,
                 step.weight_decay, step.step, grad_scale);
  }
  if (!op.params_copy.empty() && !(streamed && copy)) {
    run(ops::Cast{.out = op.params_copy, .inp = op.params});
  }
}

}  // namespace switchyard::backend::cpu
