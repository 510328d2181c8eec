// CudaBackend's mixture-of-experts ops: the operand checks of cpu_moe_ops.cc that need no look at
// device data (shapes, dtypes, density), then the kernels of moe_kernels.h and
// expert_linear_kernels.h. Expert ids, grouped positions and offsets live in device memory, where
// the CPU backend's checks of their values would make the host wait; the kernels stay inside their
// operands for bad values instead (moe_kernels.h, expert_linear_kernels.h).
#include <cmath>
#include <string>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_operands.h"
#include "backend/cuda/expert_linear_kernels.h"
#include "backend/cuda/moe_kernels.h"
#include "backend/host_fallback.h"
#include "core/error.h"

namespace switchyard::backend::cuda {
namespace {

// The number of choices per row, k, from a [N, k] operand: at least one.
int64_t choices(const Operands& o, const Tensor& t, int64_t N, const char* what) {
  o.matrix(t, N, -1, what);
  require(t.shape[1] >= 1, "cuda {}: {} needs at least one choice per row, got {}", o.op, what,
          t.describe());
  return t.shape[1];
}

// [E, OC, C] per-expert weights, dense (-1: any size).
void require_expert_weights(const Operands& o, const Tensor& t, int64_t E, int64_t OC, int64_t C,
                            const char* what) {
  auto dim = [](int64_t n) { return n < 0 ? std::string("*") : std::to_string(n); };
  o.present(t, what);
  require(t.rank == 3 && (E < 0 || t.shape[0] == E) && (OC < 0 || t.shape[1] == OC) &&
              (C < 0 || t.shape[2] == C),
          "cuda {}: {} must be [{}, {}, {}] (experts, outputs, inputs), got {}", o.op, what,
          dim(E), dim(OC), dim(C), t.describe());
  o.dense(t, what);
}

// The stored weights as the product kernels read them: fp32, bf16 or MXFP4 (whole 32-value
// blocks along C, with their scales).
ExpertWeights expert_weights(const Operands& o, const Tensor& t) {
  switch (t.dtype) {
    case DType::kF32: return {WeightFormat::kF32, t.data, nullptr};
    case DType::kBF16: return {WeightFormat::kBF16, t.data, nullptr};
    case DType::kMXFP4:
      require(t.shape[2] % dtype_block_elements(DType::kMXFP4) == 0,
              "cuda {}: weight in mxfp4 needs rows of whole 32-value blocks (C a multiple of "
              "32), got {}",
              o.op, t.describe());
      require(t.scales != nullptr,
              "cuda {}: weight in mxfp4 has no scales (one E8M0 byte per 32 values), got {}", o.op,
              t.describe());
      return {WeightFormat::kMXFP4, t.data, t.scales};
    default:
      fail("cuda {}: weight must be fp32, bf16 or mxfp4, got {}", o.op, t.describe());
  }
}

// I from inp [A, 2I].
int64_t swiglu_width(const Operands& o, const Tensor& inp) {
  o.matrix(inp, -1, -1, "inp");
  require(inp.shape[1] % 2 == 0,
          "cuda {}: inp must be [A, 2I] (gate and up interleaved), got {}", o.op, inp.describe());
  return inp.shape[1] / 2;
}

void require_swiglu_spec(const Operands& o, float alpha, float limit) {
  require(std::isfinite(alpha) && limit > 0,
          "cuda {}: alpha must be finite and limit positive, got {} and {}", o.op, alpha, limit);
}

}  // namespace

// ---- routing ----

void CudaBackend::run(const ops::TopKRouting& op) {
  const Operands o{"topk_routing", activation_dtype()};
  o.matrix(op.logits, -1, -1, "logits");
  const int64_t N = op.logits.shape[0], E = op.logits.shape[1];
  const int64_t k = choices(o, op.expert_ids, N, "expert_ids");
  require(k <= E, "cuda topk_routing: {} choices per row out of {} experts", k, E);
  o.matrix(op.weights, N, k, "weights");
  if (k > kMaxTopK) return run_on_host(op);  // more choices than the kernel keeps in registers
  const void* logits = o.act(op.logits, "logits");
  int32_t* ids = o.i32_out(op.expert_ids, "expert_ids");
  SWITCHYARD_WITH_ACT(topk_routing<Act>(ids, o.f32(op.weights, "weights"),
                                        static_cast<const Act*>(logits), o.to_int(N, "logits"),
                                        o.to_int(E, "logits"), o.to_int(k, "expert_ids"),
                                        stream_));
}

void CudaBackend::run(const ops::TopKRoutingBackward& op) {
  const Operands o{"topk_routing_backward", activation_dtype()};
  o.matrix(op.dlogits, -1, -1, "dlogits");
  const int64_t N = op.dlogits.shape[0], E = op.dlogits.shape[1];
  const int64_t k = choices(o, op.expert_ids, N, "expert_ids");
  o.matrix(op.weights, N, k, "weights");
  o.matrix(op.dweights, N, k, "dweights");
  void* dlogits = o.act(op.dlogits, "dlogits");
  SWITCHYARD_WITH_ACT(topk_routing_backward<Act>(
      static_cast<Act*>(dlogits), o.f32(op.dweights, "dweights"), o.f32(op.weights, "weights"),
      o.i32(op.expert_ids, "expert_ids"), o.to_int(N, "dlogits"), o.to_int(E, "dlogits"),
      o.to_int(k, "expert_ids"), stream_));
}

void CudaBackend::run(const ops::GroupByExpert& op) {
  const Operands o{"group_by_expert", activation_dtype()};
  const int E = op.experts;
  require(E > 0, "cuda group_by_expert: experts must be positive, got {}", E);
  o.matrix(op.expert_ids, -1, -1, "expert_ids");
  const int64_t N = op.expert_ids.shape[0];
  const int64_t k = choices(o, op.expert_ids, N, "expert_ids");
  const int A = o.to_int(N * k, "expert_ids");
  o.numel(op.order, A, "order");
  o.numel(op.rows, A, "rows");
  o.numel(op.position, A, "position");
  o.numel(op.offsets, int64_t{E} + 1, "offsets");
  int32_t* order = o.i32_out(op.order, "order");
  int32_t* rows = o.i32_out(op.rows, "rows");
  int32_t* position = o.i32_out(op.position, "position");
  int32_t* offsets = o.i32_out(op.offsets, "offsets");
  const int32_t* ids = o.i32(op.expert_ids, "expert_ids");
  void* ws = workspace(group_by_expert_workspace_bytes(A, E));
  group_by_expert(order, rows, position, offsets, ids, A, static_cast<int>(k), E, ws, stream_);
}

// ---- expert products ----

void CudaBackend::run(const ops::ExpertLinear& op) {
  const Operands o{"expert_linear", activation_dtype()};
  require_expert_weights(o, op.weight, -1, -1, -1, "weight");
  const int64_t E = op.weight.shape[0], OC = op.weight.shape[1], C = op.weight.shape[2];
  o.matrix(op.inp, -1, C, "inp");
  const int64_t A = op.inp.shape[0];
  o.matrix(op.out, A, OC, "out");
  if (!op.bias.empty()) o.matrix(op.bias, E, OC, "bias");
  o.numel(op.offsets, E + 1, "offsets");
  const ExpertWeights weight = expert_weights(o, op.weight);
  void* out = o.act(op.out, "out");
  const void* inp = o.act(op.inp, "inp");
  // Every row's products are the same whatever the other rows (batch_invariant holds anyway).
  SWITCHYARD_WITH_ACT(expert_linear_forward<Act>(
      static_cast<Act*>(out), static_cast<const Act*>(inp), weight,
      o.optional_f32(op.bias, "bias"), o.i32(op.offsets, "offsets"), o.to_int(A, "inp"),
      o.to_int(E, "weight"), o.to_int(C, "weight"), o.to_int(OC, "weight"), stream_));
}

void CudaBackend::run(const ops::ExpertLinearBackward& op) {
  const Operands o{"expert_linear_backward", activation_dtype()};
  require_expert_weights(o, op.weight, -1, -1, -1, "weight");
  require(op.weight.dtype == DType::kF32 || op.weight.dtype == DType::kBF16,
          "cuda expert_linear_backward: weight is {}: mxfp4 weights are for inference and have no "
          "backward pass; training needs fp32 weights (or their bf16 copy)",
          op.weight.describe());
  const int64_t E = op.weight.shape[0], OC = op.weight.shape[1], C = op.weight.shape[2];
  o.matrix(op.inp, -1, C, "inp");
  const int64_t A = op.inp.shape[0];
  o.matrix(op.dout, A, OC, "dout");
  require_expert_weights(o, op.dweight, E, OC, C, "dweight");
  if (!op.dinp.empty()) o.matrix(op.dinp, A, C, "dinp");
  if (!op.dbias.empty()) o.matrix(op.dbias, E, OC, "dbias");
  o.numel(op.offsets, E + 1, "offsets");
  const ExpertWeights weight = expert_weights(o, op.weight);
  void* dinp = op.dinp.empty() ? nullptr : o.act(op.dinp, "dinp");
  const void* dout = o.act(op.dout, "dout");
  const void* inp = o.act(op.inp, "inp");
  SWITCHYARD_WITH_ACT(expert_linear_backward<Act>(
      static_cast<Act*>(dinp), o.f32(op.dweight, "dweight"), o.optional_f32(op.dbias, "dbias"),
      static_cast<const Act*>(dout), static_cast<const Act*>(inp), weight,
      o.i32(op.offsets, "offsets"), o.to_int(A, "inp"), o.to_int(E, "weight"),
      o.to_int(C, "weight"), o.to_int(OC, "weight"), stream_));
}

// ---- clamped SwiGLU ----

void CudaBackend::run(const ops::ClampedSwiglu& op) {
  const Operands o{"clamped_swiglu", activation_dtype()};
  require_swiglu_spec(o, op.alpha, op.limit);
  const int64_t I = swiglu_width(o, op.inp), A = op.inp.shape[0];
  o.matrix(op.out, A, I, "out");
  void* out = o.act(op.out, "out");
  const void* inp = o.act(op.inp, "inp");
  SWITCHYARD_WITH_ACT(clamped_swiglu_forward<Act>(static_cast<Act*>(out),
                                                  static_cast<const Act*>(inp), o.to_int(A, "inp"),
                                                  o.to_int(I, "out"), op.alpha, op.limit,
                                                  stream_));
}

void CudaBackend::run(const ops::ClampedSwigluBackward& op) {
  const Operands o{"clamped_swiglu_backward", activation_dtype()};
  require_swiglu_spec(o, op.alpha, op.limit);
  const int64_t I = swiglu_width(o, op.inp), A = op.inp.shape[0];
  o.matrix(op.dinp, A, 2 * I, "dinp");
  o.matrix(op.dout, A, I, "dout");
  void* dinp = o.act(op.dinp, "dinp");
  const void* inp = o.act(op.inp, "inp");
  const void* dout = o.act(op.dout, "dout");
  SWITCHYARD_WITH_ACT(clamped_swiglu_backward<Act>(
      static_cast<Act*>(dinp), static_cast<const Act*>(inp), static_cast<const Act*>(dout),
      o.to_int(A, "inp"), o.to_int(I, "dout"), op.alpha, op.limit, stream_));
}

// ---- combining the experts' outputs ----

void CudaBackend::run(const ops::ExpertCombine& op) {
  const Operands o{"expert_combine", activation_dtype()};
  o.matrix(op.weights, -1, -1, "weights");
  const int64_t N = op.weights.shape[0];
  const int64_t k = choices(o, op.weights, N, "weights");
  o.matrix(op.out, N, -1, "out");
  const int64_t C = op.out.shape[1], A = N * k;
  o.matrix(op.expert_out, A, C, "expert_out");
  o.numel(op.position, A, "position");
  void* out = o.act(op.out, "out");
  const void* expert_out = o.act(op.expert_out, "expert_out");
  SWITCHYARD_WITH_ACT(expert_combine_forward<Act>(
      static_cast<Act*>(out), static_cast<const Act*>(expert_out), o.f32(op.weights, "weights"),
      o.i32(op.position, "position"), o.to_int(N, "out"), o.to_int(C, "out"),
      o.to_int(k, "weights"), stream_));
}

void CudaBackend::run(const ops::ExpertCombineBackward& op) {
  const Operands o{"expert_combine_backward", activation_dtype()};
  o.matrix(op.weights, -1, -1, "weights");
  const int64_t N = op.weights.shape[0];
  const int64_t k = choices(o, op.weights, N, "weights");
  o.matrix(op.dweights, N, k, "dweights");
  o.matrix(op.dout, N, -1, "dout");
  const int64_t C = op.dout.shape[1], A = N * k;
  o.matrix(op.expert_out, A, C, "expert_out");
  o.matrix(op.dexpert_out, A, C, "dexpert_out");
  o.numel(op.position, A, "position");
  void* dexpert_out = o.act(op.dexpert_out, "dexpert_out");
  const void* dout = o.act(op.dout, "dout");
  const void* expert_out = o.act(op.expert_out, "expert_out");
  SWITCHYARD_WITH_ACT(expert_combine_backward<Act>(
      static_cast<Act*>(dexpert_out), o.f32(op.dweights, "dweights"),
      static_cast<const Act*>(dout), static_cast<const Act*>(expert_out),
      o.f32(op.weights, "weights"), o.i32(op.position, "position"), o.to_int(N, "dout"),
      o.to_int(C, "dout"), o.to_int(k, "weights"), stream_));
}

// ---- the router's load-balancing statistics ----

void CudaBackend::run(const ops::RouterLoadStats& op) {
  const Operands o{"router_load_stats", activation_dtype()};
  o.matrix(op.logits, -1, -1, "logits");
  const int64_t N = op.logits.shape[0], E = op.logits.shape[1];
  require(E > 0, "cuda router_load_stats: logits need experts, got {}", op.logits.describe());
  o.matrix(op.totals, 2, E, "totals");
  const int64_t k = choices(o, op.expert_ids, N, "expert_ids");
  const void* logits = o.act(op.logits, "logits");
  const int n = o.to_int(N, "logits");
  void* ws = workspace(router_load_workspace_bytes(n));
  SWITCHYARD_WITH_ACT(router_load_stats<Act>(
      o.f64(op.totals, "totals"), static_cast<const Act*>(logits),
      o.i32(op.expert_ids, "expert_ids"), n, o.to_int(E, "logits"), o.to_int(k, "expert_ids"), ws,
      stream_));
}

void CudaBackend::run(const ops::RouterLoadBackward& op) {
  const Operands o{"router_load_backward", activation_dtype()};
  o.matrix(op.logits, -1, -1, "logits");
  const int64_t N = op.logits.shape[0], E = op.logits.shape[1];
  require(E > 0, "cuda router_load_backward: logits need experts, got {}", op.logits.describe());
  o.matrix(op.dlogits, N, E, "dlogits");
  o.matrix(op.totals, 2, E, "totals");
  void* dlogits = o.act(op.dlogits, "dlogits");
  const void* logits = o.act(op.logits, "logits");
  SWITCHYARD_WITH_ACT(router_load_backward<Act>(
      static_cast<Act*>(dlogits), static_cast<const Act*>(logits), o.f64(op.totals, "totals"),
      op.scale, o.to_int(N, "logits"), o.to_int(E, "logits"), stream_));
}

}  // namespace switchyard::backend::cuda
