// CudaBackend's attention ops: GPT-2's form (q, k, v views of one packed projection, full causal
// multi-head attention) on the flash kernels with their tensor-core paths; every other spec
// (grouped-query heads, windows, sinks, any views) with head sizes up to 128 on the same kernels'
// SIMT form; the paged cache on its kernels; larger heads through the CPU reference on the host.
#include <cmath>
#include <cstdint>

#include "backend/attention_operands.h"
#include "backend/cuda/attention_kernels.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_operands.h"
#include "backend/cuda/paged_attention_kernels.h"
#include "backend/host_fallback.h"
#include "core/error.h"

namespace switchyard::backend::cuda {
namespace {

// Full causal multi-head attention at 1/sqrt(head_dim), with a head size the kernels are built
// for: GPT-2's attention.
bool flash_spec(const ops::AttentionSpec& s) {
  const float default_scale = 1.0f / std::sqrt(static_cast<float>(s.head_dim));
  return s.heads > 0 && s.kv_heads == s.heads && s.window == 0 && s.head_dim >= 1 &&
         s.head_dim <= kAttentionMaxHeadSize && (s.scale == 0.0f || s.scale == default_scale);
}

// The start of GPT-2's packed projection [rows, 3C] when q, k and v are its [rows, heads,
// head_dim] views (row stride 3C, k at column C, v at 2C), else nullptr. Dtypes are checked by
// the caller.
const void* packed_qkv(const Tensor& q, const Tensor& k, const Tensor& v, int64_t rows,
                       const ops::AttentionSpec& spec) {
  const int64_t hd = spec.head_dim, C = static_cast<int64_t>(spec.heads) * hd;
  for (const Tensor* t : {&q, &k, &v}) {
    const bool view = t->rank == 3 && t->shape[0] == rows && t->shape[1] == spec.heads &&
                      t->shape[2] == hd && t->strides[0] == 3 * C && t->strides[1] == hd &&
                      t->strides[2] == 1;
    if (!view) return nullptr;
  }
  const int64_t element = dtype_bytes(q.dtype);
  const char* base = static_cast<const char*>(q.data);
  if (static_cast<const char*>(k.data) != base + C * element ||
      static_cast<const char*>(v.data) != base + 2 * C * element) {
    return nullptr;
  }
  return q.data;
}

// A dense [rows, cols] activation (attention outputs and their gradients).
bool dense_matrix(const Tensor& t, int64_t rows, int64_t cols) {
  return t.rank == 2 && t.shape[0] == rows && t.shape[1] == cols && t.is_contiguous();
}

// A view [rows, heads, head_dim] whose heads are dense (rows may be strided).
void require_heads_view(const Operands& o, const Tensor& t, int64_t rows, int heads, int head_dim,
                        const char* what) {
  o.act_view(t, what);
  backend::require_heads_view(t, rows, heads, head_dim, "cuda", o.op, what);
}

// [blocks, block_size, kv_heads, head_dim], dense.
void require_cache(const Operands& o, const Tensor& cache, int kv_heads, int head_dim,
                   const char* what) {
  o.act(cache, what);
  require(cache.rank == 4 && cache.shape[1] > 0 && cache.shape[2] == kv_heads &&
              cache.shape[3] == head_dim,
          "cuda {}: {} must be [blocks, block_size, {}, {}], got {}", o.op, what, kv_heads,
          head_dim, cache.describe());
}

// A spec the kernels over windows run (any heads, windows and sinks; head sizes up to 128): their
// record is one log-sum-exp per query row and head.
bool kernel_spec(const ops::AttentionSpec& s) {
  return s.heads > 0 && s.kv_heads > 0 && s.heads % s.kv_heads == 0 && s.window >= 0 &&
         s.head_dim >= 1 && s.head_dim <= kAttentionMaxHeadSize;
}

// [rows, cols] with dense rows (attention outputs and their gradients may have wider rows).
void require_rows(const Operands& o, const Tensor& t, int64_t rows, int64_t cols,
                  const char* what) {
  o.act_view(t, what);
  require(t.rank == 2 && t.shape[0] == rows && t.shape[1] == cols && t.strides[1] == 1 &&
              t.strides[0] >= cols,
          "cuda {}: {} must be [{}, {}] with dense rows, got {}", o.op, what, rows, cols,
          t.describe());
}

AttentionViews views_of(const ops::AttentionSpec& spec, int batch, int seq, const Tensor& q,
                        const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& dout) {
  AttentionViews g;
  g.batch = batch;
  g.seq = seq;
  g.heads = spec.heads;
  g.kv_heads = spec.kv_heads;
  g.head_dim = spec.head_dim;
  g.window = spec.window;
  g.ldq = q.strides[0];
  g.ldk = k.strides[0];
  g.ldv = v.strides[0];
  g.ldo = out.strides[0];
  g.ld_dout = dout.empty() ? 0 : dout.strides[0];
  g.scale = spec.effective_scale();
  return g;
}

}  // namespace

size_t CudaBackend::attention_record_floats(const ops::AttentionSpec& spec, int batch,
                                            int seq) const {
  if (!kernel_spec(spec)) return Backend::attention_record_floats(spec, batch, seq);
  return static_cast<size_t>(batch) * spec.heads * seq;  // the log-sum-exp of each query row
}

size_t CudaBackend::attention_scratch_floats(const ops::AttentionSpec& spec, int batch,
                                             int seq) const {
  if (!kernel_spec(spec)) return Backend::attention_scratch_floats(spec, batch, seq);
  return (attention_backward_workspace_bytes(batch, seq, spec.heads) + sizeof(float) - 1) /
         sizeof(float);
}

void CudaBackend::run(const ops::Attention& op) {
  const Operands o{"attention", activation_dtype()};
  require_attention_spec(op.spec, "cuda", o.op);
  require(op.batch >= 0 && op.seq >= 0, "cuda attention: batch {} and seq {} must be >= 0",
          op.batch, op.seq);
  const int64_t N = static_cast<int64_t>(op.batch) * op.seq;
  const int H = op.spec.heads, hd = op.spec.head_dim;
  require_heads_view(o, op.q, N, H, hd, "q");
  require_heads_view(o, op.k, N, op.spec.kv_heads, hd, "k");
  require_heads_view(o, op.v, N, op.spec.kv_heads, hd, "v");
  o.act_view(op.out, "out");
  o.dtype(op.record, DType::kF32, "record");
  const size_t record = attention_record_floats(op.spec, op.batch, op.seq);
  require(op.record.numel() >= static_cast<int64_t>(record),
          "cuda attention: the record must hold {} fp32 values (attention_record_floats), got {}",
          record, op.record.describe());
  const float* sinks = o.optional_f32(op.sinks, "sinks");
  if (sinks) o.numel(op.sinks, H, "sinks");
  // Head sizes over the kernels' 128: the host's reference, whose record holds the probabilities.
  if (!kernel_spec(op.spec)) return run_on_host(op);
  float* lse = o.f32(op.record, "record");
  const void* qkv = flash_spec(op.spec) && !sinks ? packed_qkv(op.q, op.k, op.v, N, op.spec)
                                                  : nullptr;
  if (qkv && dense_matrix(op.out, N, static_cast<int64_t>(H) * hd)) {
    SWITCHYARD_WITH_ACT(attention_forward<Act>(static_cast<Act*>(op.out.data), lse,
                                               static_cast<const Act*>(qkv), op.batch, op.seq,
                                               H * hd, H, stream_));
    return;
  }
  require_rows(o, op.out, N, static_cast<int64_t>(H) * hd, "out");
  const AttentionViews g = views_of(op.spec, op.batch, op.seq, op.q, op.k, op.v, op.out, {});
  SWITCHYARD_WITH_ACT(attention_forward<Act>(
      static_cast<Act*>(op.out.data), lse, static_cast<const Act*>(op.q.data),
      static_cast<const Act*>(op.k.data), static_cast<const Act*>(op.v.data), sinks, g, stream_));
}

void CudaBackend::run(const ops::AttentionBackward& op) {
  const Operands o{"attention_backward", activation_dtype()};
  require_attention_spec(op.spec, "cuda", o.op);
  require(op.batch >= 0 && op.seq >= 0,
          "cuda attention_backward: batch {} and seq {} must be >= 0", op.batch, op.seq);
  const int64_t N = static_cast<int64_t>(op.batch) * op.seq;
  const int H = op.spec.heads, KV = op.spec.kv_heads, hd = op.spec.head_dim;
  require_heads_view(o, op.q, N, H, hd, "q");
  require_heads_view(o, op.k, N, KV, hd, "k");
  require_heads_view(o, op.v, N, KV, hd, "v");
  require_heads_view(o, op.dq, N, H, hd, "dq");
  require_heads_view(o, op.dk, N, KV, hd, "dk");
  require_heads_view(o, op.dv, N, KV, hd, "dv");
  require(op.dq.strides[0] == op.q.strides[0] && op.dk.strides[0] == op.k.strides[0] &&
              op.dv.strides[0] == op.v.strides[0],
          "cuda attention_backward: dq, dk, dv must be laid out as q, k, v");
  o.act_view(op.out, "out");
  o.act_view(op.dout, "dout");
  o.dtype(op.record, DType::kF32, "record");
  o.dtype(op.scratch, DType::kF32, "scratch");
  const size_t record = attention_record_floats(op.spec, op.batch, op.seq);
  const size_t scratch = attention_scratch_floats(op.spec, op.batch, op.seq);
  require(op.record.numel() >= static_cast<int64_t>(record) &&
              op.scratch.numel() >= static_cast<int64_t>(scratch),
          "cuda attention_backward: record and scratch must hold {} and {} fp32 values "
          "(attention_record_floats, attention_scratch_floats), got {} and {}",
          record, scratch, op.record.describe(), op.scratch.describe());
  const float* sinks = o.optional_f32(op.sinks, "sinks");
  float* dsinks = o.optional_f32(op.dsinks, "dsinks");
  require(!sinks || (op.sinks.numel() == H && dsinks && op.dsinks.numel() == H),
          "cuda attention_backward: sinks and dsinks must both hold {} values", H);
  if (!kernel_spec(op.spec)) return run_on_host(op);
  float* lse = o.f32(op.record, "record");
  float* ws = o.f32(op.scratch, "scratch");
  const bool flash = flash_spec(op.spec) && !sinks;
  const void* qkv = flash ? packed_qkv(op.q, op.k, op.v, N, op.spec) : nullptr;
  const void* dqkv = flash ? packed_qkv(op.dq, op.dk, op.dv, N, op.spec) : nullptr;
  const int64_t C = static_cast<int64_t>(H) * hd;
  if (qkv && dqkv && dense_matrix(op.out, N, C) && dense_matrix(op.dout, N, C)) {
    SWITCHYARD_WITH_ACT(attention_backward<Act>(
        static_cast<Act*>(const_cast<void*>(dqkv)), ws, static_cast<const Act*>(op.dout.data),
        static_cast<const Act*>(op.out.data), static_cast<const Act*>(qkv), lse, op.batch,
        op.seq, static_cast<int>(C), H, stream_));
    return;
  }
  require_rows(o, op.out, N, C, "out");
  require_rows(o, op.dout, N, C, "dout");
  const AttentionViews g = views_of(op.spec, op.batch, op.seq, op.q, op.k, op.v, op.out, op.dout);
  SWITCHYARD_WITH_ACT(attention_backward<Act>(
      static_cast<Act*>(op.dq.data), static_cast<Act*>(op.dk.data), static_cast<Act*>(op.dv.data),
      dsinks, ws, static_cast<const Act*>(op.dout.data), static_cast<const Act*>(op.out.data),
      static_cast<const Act*>(op.q.data), static_cast<const Act*>(op.k.data),
      static_cast<const Act*>(op.v.data), sinks, lse, g, stream_));
}

void CudaBackend::run(const ops::AttentionDecode& op) {
  const Operands o{"attention_decode", activation_dtype()};
  require_attention_spec(op.spec, "cuda", o.op);
  require(op.spec.heads == op.spec.kv_heads && op.spec.window == 0,
          "cuda attention_decode: the dense cache is for full multi-head attention");
  const int H = op.spec.heads, hd = op.spec.head_dim;
  o.act(op.k_cache, "k_cache");
  require(op.k_cache.rank == 4 && op.k_cache.shape[1] == H && op.k_cache.shape[3] == hd,
          "cuda attention_decode: k_cache must be [B, {}, max_seq, {}], got {}", H, hd,
          op.k_cache.describe());
  const int64_t B = op.k_cache.shape[0], max_T = op.k_cache.shape[2];
  require_heads_view(o, op.q, B, H, hd, "q");
  require_heads_view(o, op.k, B, H, hd, "k");
  require_heads_view(o, op.v, B, H, hd, "v");
  o.act(op.v_cache, "v_cache");
  o.numel(op.v_cache, op.k_cache.numel(), "v_cache");
  require(op.pos >= 0 && op.pos < max_T,
          "cuda attention_decode: position {} is outside the KV cache [0, {})", op.pos, max_T);
  o.act_view(op.out, "out");
  const int64_t C = static_cast<int64_t>(H) * hd;
  const void* qkv = flash_spec(op.spec) ? packed_qkv(op.q, op.k, op.v, B, op.spec) : nullptr;
  if (!qkv || !dense_matrix(op.out, B, C)) return run_on_host(op);
  SWITCHYARD_WITH_ACT(attention_decode<Act>(
      static_cast<Act*>(op.out.data), static_cast<const Act*>(qkv),
      static_cast<Act*>(op.k_cache.data), static_cast<Act*>(op.v_cache.data),
      o.to_int(B, "k_cache"), op.pos, o.to_int(max_T, "k_cache"), static_cast<int>(C), H,
      stream_));
}

void CudaBackend::run(const ops::KvCacheWrite& op) {
  const Operands o{"kv_cache_write", activation_dtype()};
  o.present(op.k_cache, "k_cache");
  require(op.k_cache.rank == 4, "cuda kv_cache_write: k_cache must be 4-D, got {}",
          op.k_cache.describe());
  const int KV = o.to_int(op.k_cache.shape[2], "k_cache");
  const int hd = o.to_int(op.k_cache.shape[3], "k_cache");
  require_cache(o, op.k_cache, KV, hd, "k_cache");
  require_cache(o, op.v_cache, KV, hd, "v_cache");
  require(op.v_cache.shape[0] == op.k_cache.shape[0] && op.v_cache.shape[1] == op.k_cache.shape[1],
          "cuda kv_cache_write: k_cache {} and v_cache {} differ", op.k_cache.describe(),
          op.v_cache.describe());
  const int64_t N = op.slots.numel();
  require_heads_view(o, op.k, N, KV, hd, "k");
  require_heads_view(o, op.v, N, KV, hd, "v");
  const int32_t* slots = o.i32(op.slots, "slots");
  SWITCHYARD_WITH_ACT(kv_cache_write<Act>(
      static_cast<Act*>(op.k_cache.data), static_cast<Act*>(op.v_cache.data),
      static_cast<const Act*>(op.k.data), op.k.strides[0], static_cast<const Act*>(op.v.data),
      op.v.strides[0], slots, o.to_int(N, "slots"), op.k_cache.shape[0] * op.k_cache.shape[1],
      KV, hd, stream_));
}

void CudaBackend::run(const ops::PagedAttention& op) {
  const Operands o{"paged_attention", activation_dtype()};
  require_attention_spec(op.spec, "cuda", o.op);
  const int H = op.spec.heads, KV = op.spec.kv_heads, hd = op.spec.head_dim;
  require_cache(o, op.k_cache, KV, hd, "k_cache");
  require_cache(o, op.v_cache, KV, hd, "v_cache");
  require(op.v_cache.shape[0] == op.k_cache.shape[0] && op.v_cache.shape[1] == op.k_cache.shape[1],
          "cuda paged_attention: k_cache {} and v_cache {} differ", op.k_cache.describe(),
          op.v_cache.describe());
  const int64_t N = op.q.rank > 0 ? op.q.shape[0] : 0;
  require_heads_view(o, op.q, N, H, hd, "q");
  o.act_view(op.out, "out");
  require(op.out.rank == 2 && op.out.shape[0] == N && op.out.shape[1] == int64_t{H} * hd &&
              op.out.strides[1] == 1,
          "cuda paged_attention: out must be [{}, {}] with dense rows, got {}", N, H * hd,
          op.out.describe());
  require(op.block_tables.rank == 2,
          "cuda paged_attention: block_tables must be [sequences, blocks], got {}",
          op.block_tables.describe());
  const int S = o.to_int(op.block_tables.shape[0], "block_tables");
  o.numel(op.query_start, S + 1, "query_start");
  o.numel(op.context_len, S, "context_len");
  require(S > 0 || N == 0, "cuda paged_attention: {} query rows but no sequences", N);
  const float* sinks = o.optional_f32(op.sinks, "sinks");
  if (sinks) o.numel(op.sinks, H, "sinks");
  if (hd > kPagedMaxHeadSize) return run_on_host(op);
  PagedAttentionShape shape;
  shape.rows = o.to_int(N, "q");
  shape.heads = H;
  shape.kv_heads = KV;
  shape.head_dim = hd;
  shape.window = op.spec.window;
  shape.block_size = o.to_int(op.k_cache.shape[1], "k_cache");
  shape.blocks = op.k_cache.shape[0];
  shape.sequences = S;
  shape.max_blocks = o.to_int(op.block_tables.shape[1], "block_tables");
  shape.ldq = op.q.strides[0];
  shape.ldo = op.out.strides[0];
  shape.scale = op.spec.effective_scale();
  SWITCHYARD_WITH_ACT(paged_attention<Act>(
      static_cast<Act*>(op.out.data), static_cast<const Act*>(op.q.data),
      static_cast<const Act*>(op.k_cache.data), static_cast<const Act*>(op.v_cache.data),
      o.i32(op.block_tables, "block_tables"), o.i32(op.query_start, "query_start"),
      o.i32(op.context_len, "context_len"), sinks, shape, stream_));
}

}  // namespace switchyard::backend::cuda
