// CudaBackend's RMSNorm and RoPE ops: the operand checks of cpu_norm_rope_ops.cc, then the kernels
// of norm_rope_kernels.h. Rotary positions live in device memory: the kernel gives NaN rows for
// positions outside the tables instead of the CPU's error.
#include "backend/attention_operands.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_operands.h"
#include "backend/cuda/norm_rope_kernels.h"
#include "core/error.h"

namespace switchyard::backend::cuda {

void CudaBackend::run(const ops::RmsNorm& op) {
  const Operands o{"rmsnorm", activation_dtype()};
  o.matrix(op.inp, -1, -1, "inp");
  const int64_t N = op.inp.shape[0], C = op.inp.shape[1];
  require(C > 0, "cuda rmsnorm: rows must have channels, got {}", op.inp.describe());
  require(op.epsilon >= 0, "cuda rmsnorm: epsilon must not be negative, got {}", op.epsilon);
  o.matrix(op.out, N, C, "out");
  o.numel(op.rstd, N, "rstd");
  o.numel(op.weight, C, "weight");
  void* out = o.act(op.out, "out");
  const void* inp = o.act(op.inp, "inp");
  SWITCHYARD_WITH_ACT(rmsnorm_forward<Act>(static_cast<Act*>(out), o.f32(op.rstd, "rstd"),
                                           static_cast<const Act*>(inp),
                                           o.f32(op.weight, "weight"), o.to_int(N, "inp"),
                                           o.to_int(C, "inp"), op.epsilon, stream_));
}

void CudaBackend::run(const ops::RmsNormBackward& op) {
  const Operands o{"rmsnorm_backward", activation_dtype()};
  o.matrix(op.inp, -1, -1, "inp");
  const int64_t N = op.inp.shape[0], C = op.inp.shape[1];
  require(C > 0, "cuda rmsnorm_backward: rows must have channels, got {}", op.inp.describe());
  o.matrix(op.dinp, N, C, "dinp");
  o.matrix(op.dout, N, C, "dout");
  o.numel(op.weight, C, "weight");
  o.numel(op.dweight, C, "dweight");
  o.numel(op.rstd, N, "rstd");
  void* dinp = o.act(op.dinp, "dinp");
  const void* dout = o.act(op.dout, "dout");
  const void* inp = o.act(op.inp, "inp");
  const int n = o.to_int(N, "inp"), c = o.to_int(C, "inp");
  void* ws = workspace(rmsnorm_backward_workspace_bytes(n, c));
  SWITCHYARD_WITH_ACT(rmsnorm_backward<Act>(
      static_cast<Act*>(dinp), o.f32(op.dweight, "dweight"), static_cast<const Act*>(dout),
      static_cast<const Act*>(inp), o.f32(op.weight, "weight"), o.f32(op.rstd, "rstd"), n, c, ws,
      stream_));
}

void CudaBackend::run(const ops::Rope& op) {
  const Operands o{"rope", activation_dtype()};
  const Tensor& x = op.x;
  o.act_view(x, "x");
  require(x.rank == 3, "cuda rope: x must be an [N, heads, head_dim] view, got {}", x.describe());
  const int64_t N = x.shape[0];
  const int heads = o.to_int(x.shape[1], "x"), head_dim = o.to_int(x.shape[2], "x");
  require(heads > 0 && head_dim > 0 && head_dim % 2 == 0,
          "cuda rope: x needs heads and an even head_dim (pairs i, i + head_dim / 2), got {}",
          x.describe());
  backend::require_heads_view(x, N, heads, head_dim, "cuda", o.op, "x");
  const int pairs = head_dim / 2;
  o.matrix(op.cos, -1, pairs, "cos");
  const int64_t table_rows = op.cos.shape[0];
  o.matrix(op.sin, table_rows, pairs, "sin");
  o.numel(op.positions, N, "positions");
  SWITCHYARD_WITH_ACT(rope<Act>(static_cast<Act*>(x.data), x.strides[0], o.f32(op.cos, "cos"),
                                o.f32(op.sin, "sin"), o.i32(op.positions, "positions"),
                                o.to_int(table_rows, "cos"), o.to_int(N, "x"), heads, head_dim,
                                op.transpose, stream_));
}

}  // namespace switchyard::backend::cuda
