// The operand checks CpuBackend's ops share. Each throws switchyard::Error with a message that
// names the op ("cpu linear: ...") and the operand, before any kernel runs.
#pragma once

#include <cstdint>
#include <optional>

#include "backend/cpu/attention_kernels.h"
#include "backend/cpu/cpu_kernels.h"
#include "backend/ops.h"
#include "core/error.h"
#include "core/tensor.h"

namespace switchyard::backend::cpu {

// n as an int (the kernels' sizes), or an error when it does not fit.
int to_int(int64_t n, const char* op, const char* what);

void require_dtype(const Tensor& t, DType dtype, const char* op, const char* what);

// A present, dense tensor of `dtype`, as T*.
template <typename T>
T* dense(const Tensor& t, DType dtype, const char* op, const char* what) {
  require(!t.empty(), "cpu {}: {} is missing", op, what);
  require_dtype(t, dtype, op, what);
  require(t.is_contiguous(), "cpu {}: {} must be dense, got {}", op, what, t.describe());
  return static_cast<T*>(t.data);
}
float* f32(const Tensor& t, const char* op, const char* what);
// nullptr when the optional operand is absent.
float* optional_f32(const Tensor& t, const char* op, const char* what);
int32_t* i32(const Tensor& t, const char* op, const char* what);
double* f64(const Tensor& t, const char* op, const char* what);

// A present, dense weight operand (a matrix, or a stack of them such as [E, OC, C]) stored as fp32,
// bf16 or MXFP4; MXFP4 with its scales and rows of whole 32-value blocks.
WeightMatrix weight_matrix(const Tensor& t, const char* op, const char* what);
// A weight a backward pass can use: fp32. Inference weights (bf16, MXFP4) are an error that says so.
const float* trainable_weight(const Tensor& t, const char* op, const char* what);

void require_numel(const Tensor& t, int64_t n, const char* op, const char* what);

// [rows, cols] of a 2-D operand, checked against what the others imply (-1: not yet known).
void require_matrix(const Tensor& t, int64_t rows, int64_t cols, const char* op, const char* what);

// Every ids[i] in [0, limit); the message calls each one `what` ("target 5 at row 1 ...").
void require_ids(const int32_t* ids, int64_t n, int64_t limit, const char* op, const char* what);

// A q/k/v-style view [rows, heads, head_dim] of `dtype` with dense heads and rows of stride >=
// heads * head_dim.
void require_heads_view(const Tensor& t, int64_t rows, int heads, int head_dim, const char* op,
                        const char* what, DType dtype = DType::kF32);

// Group boundaries of `groups` groups over `rows` rows: offsets[0] = 0, never decreasing,
// offsets[groups] = rows.
void require_offsets(const int32_t* offsets, int64_t groups, int64_t rows, const char* op,
                     const char* what);

// A linear layer's sizes, its operands' shapes checked (not their dtypes): weight [OC, C], inp
// [N, C], out [N, OC], bias [OC] when present; for the backward pass also dout [N, OC], dweight
// [OC, C], dinp [N, C] and dbias [OC] when present.
struct LinearShape {
  int N = 0, C = 0, OC = 0;
};
LinearShape check_linear(const ops::Linear& op);
LinearShape check_linear_backward(const ops::LinearBackward& op);

// An expert product's sizes and row groups, its operands' shapes checked (not their dtypes):
// weight [E, OC, C], inp [A, C], out [A, OC], bias [E, OC] when present, offsets [E + 1] groups of
// the A rows (defined in cpu_moe_ops.cc).
struct ExpertLinearShape {
  int E = 0, C = 0, OC = 0;
  const int32_t* offsets = nullptr;
};
ExpertLinearShape check_expert_linear(const ops::ExpertLinear& op);

// An embedding's sizes and indices, its operands' shapes checked (not their dtypes): out [N, C],
// table [rows, C] and every id in [0, rows); position_table [positions, C] and position_ids [N]
// in range when present (position_ids null otherwise).
struct EmbeddingShape {
  int N = 0, C = 0;
  const int32_t* ids = nullptr;
  const int32_t* position_ids = nullptr;
};
EmbeddingShape check_embedding(const ops::Embedding& op);
// The embedding's parameter tables where they are held as fp32 halves (table_low present; nullopt
// otherwise), checked: bf16 high halves and u16 low halves of the same shapes, for the position
// table (when present) as well as the table.
struct EmbeddingHalves {
  HalvesTable table, positions;  // positions.high null without a position table
};
std::optional<EmbeddingHalves> embedding_halves(const ops::Embedding& op);

// LayerNorm's rows N and channels C, its operands' shapes checked (not their dtypes): inp, out
// (dinp, dout) [N, C], mean and rstd [N], weight and bias (dweight, dbias) [C].
struct RowsShape {
  int N = 0, C = 0;
};
RowsShape check_layernorm(const ops::LayerNorm& op);
RowsShape check_layernorm_backward(const ops::LayerNormBackward& op);

// The paged cache's ops, their rows and cache of `dtype` (fp32; bf16 in bf16 mode) checked, as
// their kernels take them (defined in cpu_ops.cc).
struct KvCacheWriteShape {
  int rows = 0, kv_heads = 0, head_dim = 0;
};
KvCacheWriteShape check_kv_cache_write(const ops::KvCacheWrite& op, DType dtype);
PagedGeometry check_paged_attention(const ops::PagedAttention& op, DType dtype);

// The windowed attention ops' operands checked, as their kernels take them (defined in
// cpu_ops.cc): q, k, v and out (dq, dk, dv, dout) of `dtype` (fp32; bf16 in bf16 mode), the record
// (and scratch) fp32 of at least record_floats values, sinks (and dsinks) fp32 of heads values
// when present.
struct AttentionOperands {
  AttentionGeometry geometry;
  const float* sinks = nullptr;
  float* dsinks = nullptr;
};
AttentionOperands check_attention(const ops::Attention& op, DType dtype, size_t record_floats);
AttentionOperands check_attention_backward(const ops::AttentionBackward& op, DType dtype,
                                           size_t record_floats);

// p[0..n) holds every index of [0, n) exactly once.
void require_permutation(const int32_t* p, int64_t n, const char* op, const char* what);

}  // namespace switchyard::backend::cpu
