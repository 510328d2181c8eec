// NeuronSimBackend's rotary embeddings and mixture-of-experts routing ops (all but the expert
// products): check the operands as the CPU backend does (shapes, k <= E, ids and positions in
// range, grouped positions a permutation), present them to one launch, and run the tile programs.
// Forms past the programs' limits (routing_tiles.h, rope_kernel.h) run on the host.
//
// Timing-only mode: none of these launches depends on the values of ids or positions (each
// program's instructions follow from the shapes alone), so they time as in a functional run. The
// checks that read values still run on what device memory holds (zeros, or what the host wrote),
// except the permutation check of the grouped positions, which zeros fail: it runs in functional
// mode only. The routing decides what later launches do (which experts' weights stream), so in
// timing-only mode the host writes TopKRouting's choices (uniform, timing_only_routing.h) and
// computes GroupByExpert's outputs (the expert products' offsets) from the ids memory holds.
#include <algorithm>
#include <string>
#include <vector>

#include "backend/host_fallback.h"
#include "backend/neuron/expert_combine_kernel.h"
#include "backend/neuron/group_by_expert_kernel.h"
#include "backend/neuron/kernel_launch.h"
#include "backend/neuron/neuron_sim_backend.h"
#include "backend/neuron/rope_kernel.h"
#include "backend/neuron/router_load_kernel.h"
#include "backend/neuron/routing_tiles.h"
#include "backend/neuron/sim_op_checks.h"
#include "backend/neuron/timing_only_routing.h"
#include "backend/neuron/topk_routing_kernel.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

// Tile programs, named apart from the Backend members that launch them.
namespace kernels = ::switchyard::backend::neuron;

namespace {

// k, the choices per row, of an [N, k] operand: at least one.
int64_t choices(const std::string& at, const Tensor& t, int64_t N, const char* what) {
  require_matrix(at, t, N, -1, what);
  require(t.shape[1] >= 1, "{}: {} needs at least one choice per row, got {}", at, what,
          t.describe());
  return t.shape[1];
}

// k choices out of E experts.
void require_choices_fit(const std::string& at, int64_t k, int64_t E) {
  require(k <= E, "{}: {} choices per row out of {} experts (k must not exceed E)", at, k, E);
}

// The one-hot tiles of a routing program hold k * E cells.
bool routing_fits(int64_t E, int64_t k) {
  return E <= kMaxExperts && k <= kPartitions && k * E <= kMaxOneHotCells;
}

// position[0..A) holds every grouped row of [0, A) once. Checked where memory holds values.
void require_permutation(const std::string& at, const Tensor& position, int64_t A,
                         ExecutionMode mode) {
  require_ids(at, position, A, A, "position");
  if (mode != ExecutionMode::kFunctional) return;
  std::vector<bool> seen(static_cast<size_t>(A), false);
  const int32_t* p = position.as<const int32_t>();
  for (int64_t a = 0; a < A; ++a) {
    require(!seen[p[a]], "{}: position {} of assignment {} repeats an earlier assignment's (the "
            "positions must be a permutation of the grouped rows)",
            at, p[a], a);
    seen[p[a]] = true;
  }
}

}  // namespace

// ---- rotary position embeddings ----

void NeuronSimBackend::run(const ops::Rope& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("rope");
  const Tensor& x = op.x;
  require(x.rank == 3 && x.shape[1] > 0 && x.shape[2] > 0 && x.shape[2] % 2 == 0,
          "{}: x must be an [N, heads, head_dim] view with an even head_dim (pairs i, i + "
          "head_dim / 2), got {}",
          at, x.describe());
  const int64_t N = x.shape[0], H = x.shape[1], D = x.shape[2], W = H * D;
  require(x.strides[2] == 1 && x.strides[1] == D && (N <= 1 || x.strides[0] >= W),
          "{}: x must be rows of dense heads (any row stride, as q and k in a packed projection), "
          "got {}",
          at, x.describe());
  if (!kernels::rope_supported(H, D)) return run_on_host(op);
  require_matrix(at, op.cos, -1, D / 2, "cos");
  const int64_t positions = op.cos.shape[0];
  require(positions > 0, "{}: the cos and sin tables have no positions", at);
  require_matrix(at, op.sin, positions, D / 2, "sin");
  require_ids(at, op.positions, N, positions, "position");
  if (N == 0) return;
  Launch l(*core_);
  kernels::rope(*core_, strided_rows(l, x, N, W, N <= 1 ? W : x.strides[0], "x"),
                l.hbm(op.cos, "cos"), l.hbm(op.sin, "sin"), l.hbm(op.positions, "positions", {N, 1}),
                H, D, op.transpose, compute_);
  l.finish();
}

// ---- routing ----

void NeuronSimBackend::run(const ops::TopKRouting& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("topk_routing");
  require_matrix(at, op.logits, -1, -1, "logits");
  const int64_t N = op.logits.shape[0], E = op.logits.shape[1];
  const int64_t k = choices(at, op.expert_ids, N, "expert_ids");
  require_choices_fit(at, k, E);
  require_matrix(at, op.weights, N, k, "weights");
  if (E > kMaxExperts) return run_on_host(op);
  if (N == 0) return;
  Launch l(*core_);
  kernels::topk_routing_forward(*core_, l.hbm(op.expert_ids, "expert_ids"),
                                l.hbm(op.weights, "weights"), l.hbm(op.logits, "logits"));
  l.finish();
  // Zero logits would route every token to the same experts: timing-only runs assume uniform
  // routing instead (timing_only_routing.h).
  if (mode_ == ExecutionMode::kTimingOnly) {
    write_uniform_routing(op.expert_ids, op.weights, static_cast<int>(E), ++routing_calls_);
  }
}

void NeuronSimBackend::run(const ops::TopKRoutingBackward& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("topk_routing_backward");
  require_matrix(at, op.dlogits, -1, -1, "dlogits");
  const int64_t N = op.dlogits.shape[0], E = op.dlogits.shape[1];
  const int64_t k = choices(at, op.expert_ids, N, "expert_ids");
  require_matrix(at, op.weights, N, k, "weights");
  require_matrix(at, op.dweights, N, k, "dweights");
  require_ids(at, op.expert_ids, N * k, E, "expert id");
  if (!routing_fits(E, k)) return run_on_host(op);
  if (N == 0) return;
  Launch l(*core_);
  kernels::topk_routing_backward(*core_, l.hbm(op.dlogits, "dlogits"),
                                 l.hbm(op.dweights, "dweights"), l.hbm(op.weights, "weights"),
                                 l.hbm(op.expert_ids, "expert_ids"));
  l.finish();
}

void NeuronSimBackend::run(const ops::GroupByExpert& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("group_by_expert");
  const int64_t E = op.experts;
  require(E > 0, "{}: experts must be positive, got {}", at, E);
  require_matrix(at, op.expert_ids, -1, -1, "expert_ids");
  const int64_t N = op.expert_ids.shape[0];
  const int64_t k = choices(at, op.expert_ids, N, "expert_ids"), A = N * k;
  require_elements(at, op.order, A, "order");
  require_elements(at, op.rows, A, "rows");
  require_elements(at, op.position, A, "position");
  require_elements(at, op.offsets, E + 1, "offsets");
  require_ids(at, op.expert_ids, A, E, "expert id");
  if (!routing_fits(E, k) || A >= kMaxAssignments) return run_on_host(op);
  if (A == 0) {
    // No assignments: every expert's range is empty. Nothing to launch for.
    std::fill_n(op.offsets.as<int32_t>(), E + 1, 0);
    return;
  }
  Launch l(*core_);
  kernels::group_by_expert(*core_, l.hbm(op.order, "order", {A, 1}), l.hbm(op.rows, "rows", {A, 1}),
                           l.hbm(op.position, "position", {A, 1}),
                           l.hbm(op.offsets, "offsets", {1, E + 1}),
                           l.hbm(op.expert_ids, "expert_ids"), E);
  l.finish();
  // A timing-only core writes nothing, yet what reads the grouping must find a valid one: the
  // expert products size their launch from the offsets (and their host fallback checks them). So
  // the host computes it from the ids memory holds, at no simulated cost.
  if (mode_ == ExecutionMode::kTimingOnly) host_reference_backend().run(op);
}

// ---- combining the experts' outputs ----

namespace {

// The sizes of a combine or its backward pass: N rows of C columns (`rows`: out or dout), k
// choices (weights [N, k]), expert_out [A = N * k, C], and the grouped positions.
struct CombineSizes {
  int64_t N = 0, k = 0, A = 0, C = 0;
};

CombineSizes combine_sizes(const std::string& at, const Tensor& weights, const Tensor& rows,
                           const char* rows_name, const Tensor& expert_out, const Tensor& position,
                           ExecutionMode mode) {
  CombineSizes s;
  require_matrix(at, weights, -1, -1, "weights");
  s.N = weights.shape[0];
  s.k = choices(at, weights, s.N, "weights");
  s.A = s.N * s.k;
  require_matrix(at, rows, s.N, -1, rows_name);
  s.C = rows.shape[1];
  require_matrix(at, expert_out, s.A, s.C, "expert_out");
  // Also in the backward pass: a repeated position would add two assignments into one row.
  require_permutation(at, position, s.A, mode);
  return s;
}

}  // namespace

void NeuronSimBackend::run(const ops::ExpertCombine& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("expert_combine");
  const CombineSizes s =
      combine_sizes(at, op.weights, op.out, "out", op.expert_out, op.position, mode_);
  if (s.k > kPartitions || s.C > kernels::kMaxCombineColumns) return run_on_host(op);
  if (s.N == 0 || s.C == 0) return;
  Launch l(*core_);
  kernels::expert_combine_forward(*core_, l.hbm(op.out, "out"), l.hbm(op.expert_out, "expert_out"),
                                  l.hbm(op.weights, "weights"),
                                  l.hbm(op.position, "position", {s.N, s.k}), compute_);
  l.finish();
}

void NeuronSimBackend::run(const ops::ExpertCombineBackward& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("expert_combine_backward");
  const CombineSizes s =
      combine_sizes(at, op.weights, op.dout, "dout", op.expert_out, op.position, mode_);
  require_matrix(at, op.dweights, s.N, s.k, "dweights");
  require_matrix(at, op.dexpert_out, s.A, s.C, "dexpert_out");
  if (s.k > kPartitions || s.C > kernels::kMaxCombineColumns) return run_on_host(op);
  if (s.N == 0 || s.C == 0) return;
  Launch l(*core_);
  kernels::expert_combine_backward(
      *core_, l.hbm(op.dexpert_out, "dexpert_out"), l.hbm(op.dweights, "dweights"),
      l.hbm(op.dout, "dout"), l.hbm(op.expert_out, "expert_out"), l.hbm(op.weights, "weights"),
      l.hbm(op.position, "position", {s.N, s.k}), compute_);
  l.finish();
}

// ---- the router's load-balancing statistics: fp64 totals stay on the host side ----

void NeuronSimBackend::run(const ops::RouterLoadStats& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("router_load_stats");
  require_matrix(at, op.logits, -1, -1, "logits");
  const int64_t N = op.logits.shape[0], E = op.logits.shape[1];
  require(E > 0, "{}: logits need experts, got {}", at, op.logits.describe());
  require_matrix(at, op.totals, 2, E, "totals");
  const int64_t k = choices(at, op.expert_ids, N, "expert_ids");
  require_ids(at, op.expert_ids, N * k, E, "expert id");
  if (!routing_fits(E, k)) return run_on_host(op);
  if (N == 0) return;
  Launch l(*core_);
  const std::vector<double> sums = kernels::router_load_stats(
      *core_, l.hbm(op.logits, "logits"), l.hbm(op.expert_ids, "expert_ids"));
  l.finish();
  double* totals = op.totals.as<double>();
  for (int64_t i = 0; i < 2 * E; ++i) totals[i] += sums[static_cast<size_t>(i)];
}

void NeuronSimBackend::run(const ops::RouterLoadBackward& op) {
  check_operand_dtypes(op);
  const std::string at = op_label("router_load_backward");
  require_matrix(at, op.logits, -1, -1, "logits");
  const int64_t N = op.logits.shape[0], E = op.logits.shape[1];
  require(E > 0, "{}: logits need experts, got {}", at, op.logits.describe());
  require_matrix(at, op.dlogits, N, E, "dlogits");
  require_matrix(at, op.totals, 2, E, "totals");
  if (E > kMaxExperts) return run_on_host(op);
  if (N == 0) return;
  // The counts the program broadcasts, narrowed from the fp64 totals on the host.
  const double* totals = op.totals.as<const double>();
  std::vector<float> counts(totals, totals + E);
  Launch l(*core_);
  kernels::router_load_backward(*core_, l.hbm(op.dlogits, "dlogits"), l.hbm(op.logits, "logits"),
                                l.hbm(counts.data(), DType::kF32, {1, E}, "counts"), op.scale);
  l.finish();
}

}  // namespace switchyard::backend::neuron
