// CpuBackend's mixture-of-experts ops: check the operands (shapes, expert ids below E, grouped
// positions that are a permutation, offsets that split the rows), then run the float kernels
// (moe_kernels.h, expert_linear_kernels.h).
#include <cmath>
#include <string>

#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/expert_linear_kernels.h"
#include "backend/cpu/moe_kernels.h"
#include "backend/cpu/operand_checks.h"
#include "backend/cpu/thread_adapter.h"
#include "core/error.h"

namespace switchyard::backend::cpu {
namespace {

// Row n's choices, ids[N, k], each an expert below E.
void require_expert_ids(const int32_t* ids, int64_t N, int64_t k, int64_t E, const char* op,
                        const char* what) {
  for (int64_t n = 0; n < N; ++n) {
    for (int64_t j = 0; j < k; ++j) {
      const int32_t e = ids[n * k + j];
      require(e >= 0 && e < E, "cpu {}: {} {} of row {} (choice {}) is outside [0, {}) experts", op,
              what, e, n, j, E);
    }
  }
}

// [E, OC, C] per-expert weights (-1: any size).
void require_expert_weights(const Tensor& t, int64_t E, int64_t OC, int64_t C, const char* op,
                            const char* what) {
  auto dim = [](int64_t n) { return n < 0 ? std::string("*") : std::to_string(n); };
  require(t.rank == 3 && (E < 0 || t.shape[0] == E) && (OC < 0 || t.shape[1] == OC) &&
              (C < 0 || t.shape[2] == C),
          "cpu {}: {} must be [{}, {}, {}] (experts, outputs, inputs), got {}", op, what, dim(E),
          dim(OC), dim(C), t.describe());
}

// The number of choices per row, k, from a [N, k] operand: at least one.
int64_t choices(const Tensor& t, int64_t N, const char* op, const char* what) {
  require_matrix(t, N, -1, op, what);
  require(t.shape[1] >= 1, "cpu {}: {} needs at least one choice per row, got {}", op, what,
          t.describe());
  return t.shape[1];
}

}  // namespace

// ---- routing ----

void CpuBackend::run(const ops::TopKRouting& op) {
  const char* name = "topk_routing";
  require_matrix(op.logits, -1, -1, name, "logits");
  const int64_t N = op.logits.shape[0], E = op.logits.shape[1];
  const int64_t k = choices(op.expert_ids, N, name, "expert_ids");
  require(k <= E, "cpu topk_routing: {} choices per row out of {} experts", k, E);
  require_matrix(op.weights, N, k, name, "weights");
  topk_routing(i32(op.expert_ids, name, "expert_ids"), f32(op.weights, name, "weights"),
               f32(op.logits, name, "logits"), to_int(N, name, "logits"),
               to_int(E, name, "logits"), to_int(k, name, "expert_ids"));
}

void CpuBackend::run(const ops::TopKRoutingBackward& op) {
  const char* name = "topk_routing_backward";
  require_matrix(op.dlogits, -1, -1, name, "dlogits");
  const int64_t N = op.dlogits.shape[0], E = op.dlogits.shape[1];
  const int64_t k = choices(op.expert_ids, N, name, "expert_ids");
  require_matrix(op.weights, N, k, name, "weights");
  require_matrix(op.dweights, N, k, name, "dweights");
  const int32_t* ids = i32(op.expert_ids, name, "expert_ids");
  require_expert_ids(ids, N, k, E, name, "expert id");
  topk_routing_backward(f32(op.dlogits, name, "dlogits"), f32(op.dweights, name, "dweights"),
                        f32(op.weights, name, "weights"), ids, to_int(N, name, "dlogits"),
                        to_int(E, name, "dlogits"), to_int(k, name, "expert_ids"));
}

void CpuBackend::run(const ops::GroupByExpert& op) {
  const char* name = "group_by_expert";
  const int E = op.experts;
  require(E > 0, "cpu group_by_expert: experts must be positive, got {}", E);
  require_matrix(op.expert_ids, -1, -1, name, "expert_ids");
  const int64_t N = op.expert_ids.shape[0];
  const int64_t k = choices(op.expert_ids, N, name, "expert_ids");
  const int A = to_int(N * k, name, "expert_ids");
  require_numel(op.order, A, name, "order");
  require_numel(op.rows, A, name, "rows");
  require_numel(op.position, A, name, "position");
  require_numel(op.offsets, int64_t{E} + 1, name, "offsets");
  const int32_t* ids = i32(op.expert_ids, name, "expert_ids");
  require_expert_ids(ids, N, k, E, name, "expert id");
  group_by_expert(i32(op.order, name, "order"), i32(op.rows, name, "rows"),
                  i32(op.position, name, "position"), i32(op.offsets, name, "offsets"), ids, A,
                  to_int(k, name, "expert_ids"), E);
}

// ---- expert products ----

ExpertLinearShape check_expert_linear(const ops::ExpertLinear& op) {
  const char* name = "expert_linear";
  require_expert_weights(op.weight, -1, -1, -1, name, "weight");
  const int64_t E = op.weight.shape[0], OC = op.weight.shape[1], C = op.weight.shape[2];
  require_matrix(op.inp, -1, C, name, "inp");
  const int64_t A = op.inp.shape[0];
  require_matrix(op.out, A, OC, name, "out");
  if (!op.bias.empty()) require_matrix(op.bias, E, OC, name, "bias");
  require_numel(op.offsets, E + 1, name, "offsets");
  const int32_t* offsets = i32(op.offsets, name, "offsets");
  require_offsets(offsets, E, A, name, "offsets");
  return {to_int(E, name, "weight"), to_int(C, name, "weight"), to_int(OC, name, "weight"),
          offsets};
}

void CpuBackend::run(const ops::ExpertLinear& op) {
  adapt_threads();
  const char* name = "expert_linear";
  const auto [E, C, OC, offsets] = check_expert_linear(op);
  const WeightMatrix weight = weight_matrix(op.weight, name, "weight");
  if (weight.dtype != DType::kF32) {  // inference weights: always the batch-invariant product
    expert_linear_forward(f32(op.out, name, "out"), f32(op.inp, name, "inp"), weight,
                          optional_f32(op.bias, name, "bias"), offsets, E, C, OC);
    return;
  }
  expert_linear_forward(f32(op.out, name, "out"), f32(op.inp, name, "inp"),
                        f32(op.weight, name, "weight"), optional_f32(op.bias, name, "bias"),
                        offsets, E, C, OC, op.batch_invariant);
}

void CpuBackend::run(const ops::ExpertLinearBackward& op) {
  adapt_threads();
  const char* name = "expert_linear_backward";
  require_expert_weights(op.weight, -1, -1, -1, name, "weight");
  const float* weight = trainable_weight(op.weight, name, "weight");
  const int64_t E = op.weight.shape[0], OC = op.weight.shape[1], C = op.weight.shape[2];
  require_matrix(op.inp, -1, C, name, "inp");
  const int64_t A = op.inp.shape[0];
  require_matrix(op.dout, A, OC, name, "dout");
  require_expert_weights(op.dweight, E, OC, C, name, "dweight");
  if (!op.dinp.empty()) require_matrix(op.dinp, A, C, name, "dinp");
  if (!op.dbias.empty()) require_matrix(op.dbias, E, OC, name, "dbias");
  require_numel(op.offsets, E + 1, name, "offsets");
  const int32_t* offsets = i32(op.offsets, name, "offsets");
  require_offsets(offsets, E, A, name, "offsets");
  expert_linear_backward(optional_f32(op.dinp, name, "dinp"), f32(op.dweight, name, "dweight"),
                         optional_f32(op.dbias, name, "dbias"), f32(op.dout, name, "dout"),
                         f32(op.inp, name, "inp"), weight, offsets, to_int(E, name, "weight"),
                         to_int(C, name, "weight"), to_int(OC, name, "weight"));
}

// ---- clamped SwiGLU ----

namespace {

// I from inp [A, 2I].
int64_t swiglu_width(const Tensor& inp, const char* op) {
  require_matrix(inp, -1, -1, op, "inp");
  require(inp.shape[1] % 2 == 0, "cpu {}: inp must be [A, 2I] (gate and up interleaved), got {}",
          op, inp.describe());
  return inp.shape[1] / 2;
}

void require_swiglu_spec(float alpha, float limit, const char* op) {
  require(std::isfinite(alpha) && limit > 0, "cpu {}: alpha must be finite and limit positive, "
          "got {} and {}", op, alpha, limit);
}

}  // namespace

void CpuBackend::run(const ops::ClampedSwiglu& op) {
  const char* name = "clamped_swiglu";
  require_swiglu_spec(op.alpha, op.limit, name);
  const int64_t I = swiglu_width(op.inp, name), A = op.inp.shape[0];
  require_matrix(op.out, A, I, name, "out");
  clamped_swiglu_forward(f32(op.out, name, "out"), f32(op.inp, name, "inp"),
                         to_int(A, name, "inp"), to_int(I, name, "out"), op.alpha, op.limit);
}

void CpuBackend::run(const ops::ClampedSwigluBackward& op) {
  const char* name = "clamped_swiglu_backward";
  require_swiglu_spec(op.alpha, op.limit, name);
  const int64_t I = swiglu_width(op.inp, name), A = op.inp.shape[0];
  require_matrix(op.dinp, A, 2 * I, name, "dinp");
  require_matrix(op.dout, A, I, name, "dout");
  clamped_swiglu_backward(f32(op.dinp, name, "dinp"), f32(op.inp, name, "inp"),
                          f32(op.dout, name, "dout"), to_int(A, name, "inp"),
                          to_int(I, name, "dout"), op.alpha, op.limit);
}

// ---- combining the experts' outputs ----

void CpuBackend::run(const ops::ExpertCombine& op) {
  const char* name = "expert_combine";
  require_matrix(op.weights, -1, -1, name, "weights");
  const int64_t N = op.weights.shape[0];
  const int64_t k = choices(op.weights, N, name, "weights");
  require_matrix(op.out, N, -1, name, "out");
  const int64_t C = op.out.shape[1], A = N * k;
  require_matrix(op.expert_out, A, C, name, "expert_out");
  require_numel(op.position, A, name, "position");
  const int32_t* position = i32(op.position, name, "position");
  require_permutation(position, A, name, "position");
  expert_combine_forward(f32(op.out, name, "out"), f32(op.expert_out, name, "expert_out"),
                         f32(op.weights, name, "weights"), position, to_int(N, name, "out"),
                         to_int(C, name, "out"), to_int(k, name, "weights"));
}

void CpuBackend::run(const ops::ExpertCombineBackward& op) {
  const char* name = "expert_combine_backward";
  require_matrix(op.weights, -1, -1, name, "weights");
  const int64_t N = op.weights.shape[0];
  const int64_t k = choices(op.weights, N, name, "weights");
  require_matrix(op.dweights, N, k, name, "dweights");
  require_matrix(op.dout, N, -1, name, "dout");
  const int64_t C = op.dout.shape[1], A = N * k;
  require_matrix(op.expert_out, A, C, name, "expert_out");
  require_matrix(op.dexpert_out, A, C, name, "dexpert_out");
  require_numel(op.position, A, name, "position");
  const int32_t* position = i32(op.position, name, "position");
  // A repeated position would also make two rows add into one grouped row at once.
  require_permutation(position, A, name, "position");
  expert_combine_backward(f32(op.dexpert_out, name, "dexpert_out"),
                          f32(op.dweights, name, "dweights"), f32(op.dout, name, "dout"),
                          f32(op.expert_out, name, "expert_out"), f32(op.weights, name, "weights"),
                          position, to_int(N, name, "dout"), to_int(C, name, "dout"),
                          to_int(k, name, "weights"));
}

// ---- the router's load-balancing statistics ----

void CpuBackend::run(const ops::RouterLoadStats& op) {
  const char* name = "router_load_stats";
  require_matrix(op.logits, -1, -1, name, "logits");
  const int64_t N = op.logits.shape[0], E = op.logits.shape[1];
  require(E > 0, "cpu router_load_stats: logits need experts, got {}", op.logits.describe());
  require_matrix(op.totals, 2, E, name, "totals");
  const int64_t k = choices(op.expert_ids, N, name, "expert_ids");
  const int32_t* ids = i32(op.expert_ids, name, "expert_ids");
  require_expert_ids(ids, N, k, E, name, "expert id");
  router_load_stats(f64(op.totals, name, "totals"), f32(op.logits, name, "logits"), ids,
                    to_int(N, name, "logits"), to_int(E, name, "logits"),
                    to_int(k, name, "expert_ids"));
}

void CpuBackend::run(const ops::RouterLoadBackward& op) {
  const char* name = "router_load_backward";
  require_matrix(op.logits, -1, -1, name, "logits");
  const int64_t N = op.logits.shape[0], E = op.logits.shape[1];
  require(E > 0, "cpu router_load_backward: logits need experts, got {}", op.logits.describe());
  require_matrix(op.dlogits, N, E, name, "dlogits");
  require_matrix(op.totals, 2, E, name, "totals");
  router_load_backward(f32(op.dlogits, name, "dlogits"), f32(op.logits, name, "logits"),
                       f64(op.totals, name, "totals"), op.scale, to_int(N, name, "logits"),
                       to_int(E, name, "logits"));
}

}  // namespace switchyard::backend::cpu
