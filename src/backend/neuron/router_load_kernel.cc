#include "backend/neuron/router_load_kernel.h"

#include <array>
#include <string>

#include "backend/neuron/dma_queues.h"
#include "backend/neuron/routing_tiles.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

// A row tile's softmax tiles.
struct SoftmaxTiles {
  View x;                // [P, E] the logits, then the probabilities
  View max, neg_max, sum;  // [P, 1]
};

SoftmaxTiles softmax_tiles(TilePool& pool, int64_t P, int64_t E, const std::string& tag) {
  return {pool.sbuf(P, {E}, DType::kF32, "router." + tag + "x"),
          pool.sbuf(P, {1}, DType::kF32, "router." + tag + "max"),
          pool.sbuf(P, {1}, DType::kF32, "router." + tag + "neg_max"),
          pool.sbuf(P, {1}, DType::kF32, "router." + tag + "sum")};
}

// Rows [first, first + r) of logits into t.x, replaced by their softmax over all E experts.
void load_softmax(NeuronCore& core, const SoftmaxTiles& t, const View& logits, int64_t first,
                  int64_t r, int queue) {
  const View x = t.x.rows(0, r), max = t.max.rows(0, r), neg_max = t.neg_max.rows(0, r),
             sum = t.sum.rows(0, r);
  core.dma_copy(x, logits.rows(first, r), queue);
  core.tensor_reduce(max, AluOp::kMax, x);
  core.tensor_scalar(neg_max, max, AluOp::kMultiply, -1.0f);
  core.activation_reduce(x, Activation::kExp, x, sum, 1.0f, neg_max);
  core.tensor_scalar(x, x, AluOp::kDivide, sum);
}

int64_t check_logits(const char* kernel, const View& logits) {
  const int64_t N = logits.partitions(), E = logits.free_size();
  require(N >= 1 && E >= 1 && E <= kMaxExperts,
          "{}: logits must have at least one row and 1 to {} experts, got {}", kernel,
          kMaxExperts, logits.describe());
  require_packed(kernel, "logits", logits, N, E, false);
  return E;
}

}  // namespace

std::vector<double> router_load_stats(NeuronCore& core, const View& logits,
                                      const View& expert_ids) {
  const char* kName = "router_load_stats";
  const int64_t E = check_logits(kName, logits), N = logits.partitions();
  const int64_t k = expert_ids.free_size();
  require(k >= 1 && k * E <= kMaxOneHotCells,
          "{}: expert_ids {} must hold at least one choice per row, with k * E <= {}", kName,
          expert_ids.describe(), kMaxOneHotCells);
  require_packed(kName, "expert_ids", expert_ids, N, k, true);

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.5);
  const RowTiles tiles{N};
  const int64_t P = tiles.partitions(), T = tiles.count();
  const View experts = pool.sbuf(P, {E}, DType::kF32, "router.experts");
  expert_iota(core, experts);
  const View ones = pool.sbuf(P, {1}, DType::kF32, "router.ones");
  core.memset(ones, 1.0f, Engine::kGpSimd);
  std::array<SoftmaxTiles, 2> softmax;
  std::array<View, 2> ids, by_expert, counts;
  for (int i = 0; i < 2; ++i) {
    const std::string tag = std::to_string(i);
    softmax[i] = softmax_tiles(pool, P, E, tag);
    ids[i] = pool.sbuf(P, {k}, DType::kI32, "router.ids" + tag);
    by_expert[i] = pool.sbuf(P, {E, k}, DType::kF32, "router.by_expert" + tag);
    counts[i] = pool.sbuf(P, {E}, DType::kF32, "router.counts" + tag);
  }
  // Column sums over every row: two accumulation groups open across all row tiles.
  const View count_sums = pool.psum(1, {E}, DType::kF32, "router.count_sums");
  const View probability_sums = pool.psum(1, {E}, DType::kF32, "router.probability_sums");
  for (int64_t t = 0; t < T; ++t) {
    const int64_t r = tiles.rows(t), first = tiles.first(t);
    auto in = [&](const std::array<View, 2>& v) { return v[t % 2].rows(0, r); };
    core.dma_copy(in(ids), expert_ids.rows(first, r), queues.load());
    load_softmax(core, softmax[t % 2], logits, first, r, queues.load());
    one_hot(core, in(by_expert), experts.rows(0, r), in(ids), OneHotLayout::kExpertMajor,
            Engine::kGpSimd);
    core.tensor_reduce(in(counts), AluOp::kAdd, in(by_expert), 1, Engine::kGpSimd);
    core.matmul(count_sums, ones.rows(0, r), in(counts), t == 0, t == T - 1);
    core.matmul(probability_sums, ones.rows(0, r), softmax[t % 2].x.rows(0, r), t == 0,
                t == T - 1);
  }
  const View sums = pool.sbuf(1, {2 * E}, DType::kF32, "router.sums");
  core.tensor_copy(sums.cols(0, E), count_sums);
  core.tensor_copy(sums.cols(E, E), probability_sums);
  const View result = core.hbm_alloc({1, 2 * E}, DType::kF32, "router.result");
  core.dma_copy(result, sums, queues.store());
  const std::vector<float> values = core.read(result);
  core.release(result);
  return std::vector<double>(values.begin(), values.end());
}

void router_load_backward(NeuronCore& core, const View& dlogits, const View& logits,
                          const View& counts, float scale) {
  const char* kName = "router_load_backward";
  const int64_t E = check_logits(kName, logits), N = logits.partitions();
  require_packed(kName, "dlogits", dlogits, N, E, false);
  require(counts.dtype() == DType::kF32, "{}: counts must be fp32, got {}", kName,
          counts.describe());
  require_dense_row(kName, "counts", counts, E);

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.34);  // two loads per store
  const RowTiles tiles{N};
  const int64_t P = tiles.partitions();
  const View c = pool.sbuf(P, {E}, DType::kF32, "router.counts");
  core.dma_copy(c, broadcast_rows(counts, P), queues.load());
  std::array<SoftmaxTiles, 2> softmax;
  std::array<View, 2> grad, d, expected;
  for (int i = 0; i < 2; ++i) {
    const std::string tag = std::to_string(i);
    softmax[i] = softmax_tiles(pool, P, E, tag);
    grad[i] = pool.sbuf(P, {E}, DType::kF32, "router.grad" + tag);
    d[i] = pool.sbuf(P, {E}, DType::kF32, "router.dlogits" + tag);
    expected[i] = pool.sbuf(P, {1}, DType::kF32, "router.expected" + tag);
  }
  for (int64_t t = 0; t < tiles.count(); ++t) {
    const int64_t r = tiles.rows(t), first = tiles.first(t);
    auto in = [&](const std::array<View, 2>& v) { return v[t % 2].rows(0, r); };
    const View p = softmax[t % 2].x.rows(0, r), g = in(grad), counts_r = c.rows(0, r);
    core.dma_copy(in(d), dlogits.rows(first, r), queues.load());
    load_softmax(core, softmax[t % 2], logits, first, r, queues.load());
    // expected = sum_e counts[e] p[e]; g = scale * p * (counts - expected).
    core.tensor_tensor(g, p, AluOp::kMultiply, counts_r);
    core.tensor_reduce(in(expected), AluOp::kAdd, g);
    core.tensor_scalar(g, counts_r, AluOp::kSubtract, in(expected), AluOp::kMultiply, scale,
                       Engine::kGpSimd);
    core.tensor_tensor(g, g, AluOp::kMultiply, p, Engine::kGpSimd);
    core.tensor_tensor(in(d), in(d), AluOp::kAdd, g);
    core.dma_copy(dlogits.rows(first, r), in(d), queues.store());
  }
}

}  // namespace switchyard::backend::neuron
