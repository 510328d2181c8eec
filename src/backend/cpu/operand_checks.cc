#include "backend/cpu/operand_checks.h"

#include <climits>
#include <string>
#include <vector>

#include "backend/attention_operands.h"

namespace switchyard::backend::cpu {

int to_int(int64_t n, const char* op, const char* what) {
  require(n >= 0 && n <= INT_MAX, "cpu {}: {} has {} elements along a dimension, more than {}", op,
          what, n, INT_MAX);
  return static_cast<int>(n);
}

void require_dtype(const Tensor& t, DType dtype, const char* op, const char* what) {
  require(t.dtype == dtype, "cpu {}: {} must be {}, got {}", op, what, dtype_name(dtype),
          t.describe());
}

float* f32(const Tensor& t, const char* op, const char* what) {
  return dense<float>(t, DType::kF32, op, what);
}

float* optional_f32(const Tensor& t, const char* op, const char* what) {
  return t.empty() ? nullptr : f32(t, op, what);
}

int32_t* i32(const Tensor& t, const char* op, const char* what) {
  return dense<int32_t>(t, DType::kI32, op, what);
}

double* f64(const Tensor& t, const char* op, const char* what) {
  return dense<double>(t, DType::kF64, op, what);
}

WeightMatrix weight_matrix(const Tensor& t, const char* op, const char* what) {
  require(!t.empty(), "cpu {}: {} is missing", op, what);
  require(t.dtype == DType::kF32 || t.dtype == DType::kBF16 || t.dtype == DType::kMXFP4,
          "cpu {}: {} must be fp32, bf16 or mxfp4, got {}", op, what, t.describe());
  require(t.is_contiguous(), "cpu {}: {} must be dense, got {}", op, what, t.describe());
  if (t.dtype == DType::kMXFP4) {
    const int64_t block = dtype_block_elements(DType::kMXFP4);
    require(t.rank >= 1 && t.shape[t.rank - 1] % block == 0,
            "cpu {}: {} in mxfp4 needs rows of whole {}-value blocks (C a multiple of {}), got {}",
            op, what, block, block, t.describe());
    require(t.scales != nullptr,
            "cpu {}: {} in mxfp4 has no scales (one E8M0 byte per {} values), got {}", op, what,
            block, t.describe());
  }
  return WeightMatrix{t.dtype, t.data, t.scales};
}

const float* trainable_weight(const Tensor& t, const char* op, const char* what) {
  require(t.dtype != DType::kBF16 && t.dtype != DType::kMXFP4,
          "cpu {}: {} is {}: inference weights (bf16, mxfp4) have no backward pass on the CPU; "
          "training needs fp32 weights",
          op, what, t.describe());
  return f32(t, op, what);
}

void require_numel(const Tensor& t, int64_t n, const char* op, const char* what) {
  require(t.numel() == n, "cpu {}: {} must have {} elements, got {}", op, what, n, t.describe());
}

void require_matrix(const Tensor& t, int64_t rows, int64_t cols, const char* op, const char* what) {
  require(t.rank == 2 && (rows < 0 || t.shape[0] == rows) && (cols < 0 || t.shape[1] == cols),
          "cpu {}: {} must be [{}, {}], got {}", op, what, rows < 0 ? "*" : std::to_string(rows),
          cols < 0 ? "*" : std::to_string(cols), t.describe());
}

void require_ids(const int32_t* ids, int64_t n, int64_t limit, const char* op, const char* what) {
  for (int64_t i = 0; i < n; ++i) {
    require(ids[i] >= 0 && ids[i] < limit, "cpu {}: {} {} at row {} is outside [0, {})", op, what,
            ids[i], i, limit);
  }
}

void require_heads_view(const Tensor& t, int64_t rows, int heads, int head_dim, const char* op,
                        const char* what, DType dtype) {
  require_dtype(t, dtype, op, what);
  backend::require_heads_view(t, rows, heads, head_dim, "cpu", op, what);
}

namespace {

// weight [OC, C] and inp [N, C]: the sizes, N and OC checked against `out` [N, OC] and `bias`.
LinearShape linear_shape(const Tensor& weight, const Tensor& inp, const Tensor& out,
                         const Tensor& bias, const char* op, const char* out_name,
                         const char* bias_name) {
  require_matrix(weight, -1, -1, op, "weight");
  const int64_t OC = weight.shape[0], C = weight.shape[1];
  require_matrix(inp, -1, C, op, "inp");
  const int64_t N = inp.shape[0];
  require_matrix(out, N, OC, op, out_name);
  if (!bias.empty()) require_numel(bias, OC, op, bias_name);
  return {to_int(N, op, "inp"), to_int(C, op, "weight"), to_int(OC, op, "weight")};
}

}  // namespace

LinearShape check_linear(const ops::Linear& op) {
  return linear_shape(op.weight, op.inp, op.out, op.bias, "linear", "out", "bias");
}

LinearShape check_linear_backward(const ops::LinearBackward& op) {
  const char* name = "linear_backward";
  const LinearShape s = linear_shape(op.weight, op.inp, op.dout, op.dbias, name, "dout", "dbias");
  require_matrix(op.dweight, s.OC, s.C, name, "dweight");
  if (!op.dinp.empty()) require_matrix(op.dinp, s.N, s.C, name, "dinp");
  return s;
}

EmbeddingShape check_embedding(const ops::Embedding& op) {
  const char* name = "embedding";
  const Tensor& table = op.table;
  require_matrix(table, -1, -1, name, "table");
  const int64_t N = op.ids.numel(), C = table.shape[1];
  require_matrix(op.out, N, C, name, "out");
  EmbeddingShape shape{.N = to_int(N, name, "ids"), .C = to_int(C, name, "table"),
                       .ids = i32(op.ids, name, "ids")};
  require_ids(shape.ids, N, table.shape[0], name, "id");
  if (!op.position_table.empty()) {
    require_matrix(op.position_table, -1, C, name, "position_table");
    shape.position_ids = i32(op.position_ids, name, "position_ids");
    require_numel(op.position_ids, N, name, "position_ids");
    require_ids(shape.position_ids, N, op.position_table.shape[0], name, "position");
  }
  return shape;
}

namespace {

HalvesTable halves_table(const Tensor& high, const Tensor& low, const char* op, const char* what) {
  require_matrix(low, high.shape[0], high.shape[1], op, "the low halves");
  return {.high = dense<const uint16_t>(high, DType::kBF16, op, what),
          .low = dense<const uint16_t>(low, DType::kU16, op, "the low halves")};
}

}  // namespace

std::optional<EmbeddingHalves> embedding_halves(const ops::Embedding& op) {
  const char* name = "embedding";
  if (op.table_low.empty()) {
    require(op.position_low.empty(), "cpu {}: position_low needs a table held as halves too", name);
    return std::nullopt;
  }
  EmbeddingHalves halves{.table = halves_table(op.table, op.table_low, name, "table")};
  if (!op.position_table.empty()) {
    require(!op.position_low.empty(),
            "cpu {}: the table is held as fp32 halves, so position_table must be too", name);
    halves.positions = halves_table(op.position_table, op.position_low, name, "position_table");
  }
  return halves;
}

namespace {

// inp [N, C] with C > 0, and the per-row statistics [N] and per-channel weight [C] beside it.
RowsShape normalised_rows(const Tensor& inp, const Tensor& mean, const Tensor& rstd,
                          const Tensor& weight, const char* name) {
  require_matrix(inp, -1, -1, name, "inp");
  const int64_t N = inp.shape[0], C = inp.shape[1];
  require(C > 0, "cpu {}: rows must have channels, got {}", name, inp.describe());
  require_numel(mean, N, name, "mean");
  require_numel(rstd, N, name, "rstd");
  require_numel(weight, C, name, "weight");
  return {to_int(N, name, "inp"), to_int(C, name, "inp")};
}

}  // namespace

RowsShape check_layernorm(const ops::LayerNorm& op) {
  const char* name = "layernorm";
  const RowsShape s = normalised_rows(op.inp, op.mean, op.rstd, op.weight, name);
  require_matrix(op.out, s.N, s.C, name, "out");
  require_numel(op.bias, s.C, name, "bias");
  return s;
}

RowsShape check_layernorm_backward(const ops::LayerNormBackward& op) {
  const char* name = "layernorm_backward";
  const RowsShape s = normalised_rows(op.inp, op.mean, op.rstd, op.weight, name);
  require_matrix(op.dinp, s.N, s.C, name, "dinp");
  require_matrix(op.dout, s.N, s.C, name, "dout");
  require_numel(op.dweight, s.C, name, "dweight");
  require_numel(op.dbias, s.C, name, "dbias");
  return s;
}

void require_offsets(const int32_t* offsets, int64_t groups, int64_t rows, const char* op,
                     const char* what) {
  require(offsets[0] == 0 && offsets[groups] == rows,
          "cpu {}: {} must run from 0 to {} rows, got {} to {}", op, what, rows, offsets[0],
          offsets[groups]);
  for (int64_t g = 0; g < groups; ++g) {
    require(offsets[g] <= offsets[g + 1], "cpu {}: {} must not decrease, got {} then {} at {}", op,
            what, offsets[g], offsets[g + 1], g);
  }
}

void require_permutation(const int32_t* p, int64_t n, const char* op, const char* what) {
  std::vector<bool> seen(static_cast<size_t>(n), false);
  for (int64_t i = 0; i < n; ++i) {
    require(p[i] >= 0 && p[i] < n, "cpu {}: {} {} at {} is outside [0, {})", op, what, p[i], i, n);
    require(!seen[p[i]], "cpu {}: {} {} appears twice (a permutation of [0, {}) is expected)", op,
            what, p[i], n);
    seen[p[i]] = true;
  }
}

}  // namespace switchyard::backend::cpu
