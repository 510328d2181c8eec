// CpuBackend's RMSNorm and RoPE ops: check the operands, then run the float kernels
// (norm_rope_kernels.h).
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/norm_rope_kernels.h"
#include "backend/cpu/operand_checks.h"
#include "core/error.h"

namespace switchyard::backend::cpu {

void CpuBackend::run(const ops::RmsNorm& op) {
  const char* name = "rmsnorm";
  require_matrix(op.inp, -1, -1, name, "inp");
  const int64_t N = op.inp.shape[0], C = op.inp.shape[1];
  require(C > 0, "cpu rmsnorm: rows must have channels, got {}", op.inp.describe());
  require(op.epsilon >= 0, "cpu rmsnorm: epsilon must not be negative, got {}", op.epsilon);
  require_matrix(op.out, N, C, name, "out");
  require_numel(op.rstd, N, name, "rstd");
  require_numel(op.weight, C, name, "weight");
  rmsnorm_forward(f32(op.out, name, "out"), f32(op.rstd, name, "rstd"), f32(op.inp, name, "inp"),
                  f32(op.weight, name, "weight"), to_int(N, name, "inp"), to_int(C, name, "inp"),
                  op.epsilon);
}

void CpuBackend::run(const ops::RmsNormBackward& op) {
  const char* name = "rmsnorm_backward";
  require_matrix(op.inp, -1, -1, name, "inp");
  const int64_t N = op.inp.shape[0], C = op.inp.shape[1];
  require(C > 0, "cpu rmsnorm_backward: rows must have channels, got {}", op.inp.describe());
  require_matrix(op.dinp, N, C, name, "dinp");
  require_matrix(op.dout, N, C, name, "dout");
  require_numel(op.weight, C, name, "weight");
  require_numel(op.dweight, C, name, "dweight");
  require_numel(op.rstd, N, name, "rstd");
  rmsnorm_backward(f32(op.dinp, name, "dinp"), f32(op.dweight, name, "dweight"),
                   f32(op.dout, name, "dout"), f32(op.inp, name, "inp"),
                   f32(op.weight, name, "weight"), f32(op.rstd, name, "rstd"),
                   to_int(N, name, "inp"), to_int(C, name, "inp"));
}

void CpuBackend::run(const ops::Rope& op) {
  const char* name = "rope";
  const Tensor& x = op.x;
  require(!x.empty() && x.rank == 3, "cpu rope: x must be an [N, heads, head_dim] view, got {}",
          x.describe());
  const int64_t N = x.shape[0];
  const int heads = to_int(x.shape[1], name, "x"), head_dim = to_int(x.shape[2], name, "x");
  require(heads > 0 && head_dim > 0 && head_dim % 2 == 0,
          "cpu rope: x needs heads and an even head_dim (pairs i, i + head_dim / 2), got {}",
          x.describe());
  require_heads_view(x, N, heads, head_dim, name, "x");
  const int pairs = head_dim / 2;
  require_matrix(op.cos, -1, pairs, name, "cos");
  const int64_t positions_in_table = op.cos.shape[0];
  require_matrix(op.sin, positions_in_table, pairs, name, "sin");
  require_numel(op.positions, N, name, "positions");
  const int32_t* positions = i32(op.positions, name, "positions");
  require_ids(positions, N, positions_in_table, name, "position");
  rope(static_cast<float*>(x.data), x.strides[0], f32(op.cos, name, "cos"),
       f32(op.sin, name, "sin"), positions, to_int(N, name, "x"), heads, head_dim, op.transpose);
}

}  // namespace switchyard::backend::cpu
