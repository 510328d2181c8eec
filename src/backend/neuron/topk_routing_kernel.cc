#include "backend/neuron/topk_routing_kernel.h"

#include <array>
#include <limits>
#include <string>

#include "backend/neuron/dma_queues.h"
#include "backend/neuron/routing_tiles.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

constexpr float kLowest = -std::numeric_limits<float>::max();   // NaN and -inf logits become this
constexpr float kStruck = -std::numeric_limits<float>::infinity();  // a chosen expert becomes this

// The forward pass's tiles of one row tile in flight.
struct ChoiceTiles {
  View x;              // [P, E] the logits, then what is left to choose from
  View mask, key;      // [P, E] scratch
  View maxima, keys;   // [P, k] each round's maximum and E - (its lowest expert)
  View ids, weights;   // [P, k] int32, fp32: the results
  View neg_max, sum;   // [P, 1] the softmax's bias and denominator
};

ChoiceTiles choice_tiles(TilePool& pool, int64_t P, int64_t E, int64_t k, int i) {
  auto tile = [&](const char* name, int64_t cols, DType dtype = DType::kF32) {
    return pool.sbuf(P, {cols}, dtype, "topk." + std::string(name) + std::to_string(i));
  };
  return {tile("x", E),        tile("mask", E),     tile("key", E),
          tile("maxima", k),   tile("keys", k),     tile("ids", k, DType::kI32),
          tile("weights", k),  tile("neg_max", 1),  tile("sum", 1)};
}

ChoiceTiles rows_of(const ChoiceTiles& t, int64_t r) {
  return {t.x.rows(0, r),      t.mask.rows(0, r),    t.key.rows(0, r),
          t.maxima.rows(0, r), t.keys.rows(0, r),    t.ids.rows(0, r),
          t.weights.rows(0, r), t.neg_max.rows(0, r), t.sum.rows(0, r)};
}

Engine other(Engine engine) { return engine == Engine::kVector ? Engine::kGpSimd : Engine::kVector; }

// Row-wide constants of the forward pass, [P, E].
struct ChoiceConstants {
  View reverse_index;  // E - e
  View lowest;         // kLowest
  View struck;         // kStruck
};

// NaN and -inf -> kLowest (x >= kLowest fails for both): every candidate is finite and above a
// struck-out expert.
void sanitize(NeuronCore& core, const ChoiceTiles& t, const ChoiceConstants& c, Engine engine) {
  const int64_t r = t.x.partitions();
  core.tensor_scalar(t.mask, t.x, AluOp::kIsGreaterEqual, kLowest, AluOp::kBypass, 0.0f, engine);
  core.select(t.x, t.mask, t.x, c.lowest.rows(0, r), engine);
}

// Round j: the largest remaining logit and E - (the lowest expert holding it); the expert is
// struck out unless this is the last round.
void choose(NeuronCore& core, const ChoiceTiles& t, const ChoiceConstants& c, int64_t j, bool last,
            Engine engine) {
  const int64_t r = t.x.partitions();
  const View m = t.maxima.cols(j, 1), key_max = t.keys.cols(j, 1);
  const View reverse = c.reverse_index.rows(0, r);
  core.tensor_reduce(m, AluOp::kMax, t.x, ::switchyard::neuron::kMaxFreeDims, engine);
  // The softmax's bias, -max, beside the rounds on the other engine.
  if (j == 0) core.tensor_scalar(t.neg_max, m, AluOp::kMultiply, -1.0f, AluOp::kBypass, 0.0f,
                                 other(engine));
  core.tensor_scalar(t.mask, t.x, AluOp::kIsEqual, m, AluOp::kBypass, 0.0f, engine);
  core.tensor_tensor(t.key, t.mask, AluOp::kMultiply, reverse, engine);
  core.tensor_reduce(key_max, AluOp::kMax, t.key, ::switchyard::neuron::kMaxFreeDims, engine);
  if (last) return;
  core.tensor_scalar(t.mask, reverse, AluOp::kIsEqual, key_max, AluOp::kBypass, 0.0f, engine);
  core.select(t.x, t.mask, c.struck.rows(0, r), t.x, engine);
}

// ids = E - keys (on the other engine); weights = softmax over the maxima (the first is the
// largest).
void finish_choices(NeuronCore& core, const ChoiceTiles& t, int64_t E, Engine engine) {
  core.tensor_scalar(t.ids, t.keys, AluOp::kMultiply, -1.0f, AluOp::kAdd,
                     static_cast<float>(E), other(engine));
  core.activation_reduce(t.weights, Activation::kExp, t.maxima, t.sum, 1.0f, t.neg_max);
  core.tensor_scalar(t.weights, t.weights, AluOp::kDivide, t.sum, AluOp::kBypass, 0.0f, engine);
}

// Checks the common shapes; returns E.
int64_t check_routing(const char* kernel, const View& rows, const View& expert_ids, int64_t N,
                      int64_t k, const char* rows_name) {
  const int64_t E = rows.free_size();
  require(N >= 1 && E >= 1 && E <= kMaxExperts,
          "{}: {} must have at least one row and 1 to {} experts, got {}", kernel, rows_name,
          kMaxExperts, rows.describe());
  require(k >= 1 && k <= E, "{}: {} choices per row out of {} experts (k must be in [1, E])",
          kernel, k, E);
  require_packed(kernel, rows_name, rows, N, E, false);
  require_packed(kernel, "expert_ids", expert_ids, N, k, true);
  return E;
}

}  // namespace

void topk_routing_forward(NeuronCore& core, const View& expert_ids, const View& weights,
                          const View& logits) {
  const char* kName = "topk_routing_forward";
  const int64_t N = logits.partitions(), k = expert_ids.free_size();
  const int64_t E = check_routing(kName, logits, expert_ids, N, k, "logits");
  require_packed(kName, "weights", weights, N, k, false);

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.5);
  const RowTiles tiles{N};
  const int64_t P = tiles.partitions();
  ChoiceConstants c;
  c.reverse_index = pool.sbuf(P, {E}, DType::kF32, "topk.reverse_index");
  core.iota(c.reverse_index, static_cast<float>(E), 0.0f, {-1.0f});
  c.lowest = pool.sbuf(P, {E}, DType::kF32, "topk.lowest");
  core.memset(c.lowest, kLowest, Engine::kGpSimd);
  c.struck = pool.sbuf(P, {E}, DType::kF32, "topk.struck");
  core.memset(c.struck, kStruck, Engine::kGpSimd);
  // Two sets of tiles: one row tile loads while the other is chosen from, on the other engine.
  const std::array<ChoiceTiles, 2> sets = {choice_tiles(pool, P, E, k, 0),
                                           choice_tiles(pool, P, E, k, 1)};
  auto load = [&](int64_t t) {
    core.dma_copy(sets[t % 2].x.rows(0, tiles.rows(t)), logits.rows(tiles.first(t), tiles.rows(t)),
                  queues.load());
  };
  load(0);
  for (int64_t t = 0; t < tiles.count(); ++t) {
    if (t + 1 < tiles.count()) load(t + 1);
    const int64_t r = tiles.rows(t);
    const ChoiceTiles tile = rows_of(sets[t % 2], r);
    const Engine engine = t % 2 == 0 ? Engine::kVector : Engine::kGpSimd;
    sanitize(core, tile, c, engine);
    for (int64_t j = 0; j < k; ++j) choose(core, tile, c, j, j + 1 == k, engine);
    finish_choices(core, tile, E, engine);
    core.dma_copy(expert_ids.rows(tiles.first(t), r), tile.ids, queues.store());
    core.dma_copy(weights.rows(tiles.first(t), r), tile.weights, queues.store());
  }
}

void topk_routing_backward(NeuronCore& core, const View& dlogits, const View& dweights,
                           const View& weights, const View& expert_ids) {
  const char* kName = "topk_routing_backward";
  const int64_t N = dlogits.partitions(), k = expert_ids.free_size();
  const int64_t E = check_routing(kName, dlogits, expert_ids, N, k, "dlogits");
  require_packed(kName, "weights", weights, N, k, false);
  require_packed(kName, "dweights", dweights, N, k, false);

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.25);  // four loads per store
  const RowTiles tiles{N};
  const int64_t P = tiles.partitions();
  const View experts = pool.sbuf(P, {E}, DType::kF32, "topk.experts");
  expert_iota(core, experts);
  const View ids = pool.sbuf(P, {k}, DType::kI32, "topk.ids");
  const View w = pool.sbuf(P, {k}, DType::kF32, "topk.weights");
  const View dw = pool.sbuf(P, {k}, DType::kF32, "topk.dweights");
  const View g = pool.sbuf(P, {k}, DType::kF32, "topk.gradient");
  const View dot = pool.sbuf(P, {1}, DType::kF32, "topk.dot");
  const View spread = pool.sbuf(P, {E, k}, DType::kF32, "topk.spread");
  const View grad = pool.sbuf(P, {E}, DType::kF32, "topk.grad");
  const View d = pool.sbuf(P, {E}, DType::kF32, "topk.dlogits");
  for (int64_t t = 0; t < tiles.count(); ++t) {
    const int64_t r = tiles.rows(t), first = tiles.first(t);
    auto in = [&](const View& v) { return v.rows(0, r); };
    core.dma_copy(in(ids), expert_ids.rows(first, r), queues.load());
    core.dma_copy(in(w), weights.rows(first, r), queues.load());
    core.dma_copy(in(dw), dweights.rows(first, r), queues.load());
    core.dma_copy(in(d), dlogits.rows(first, r), queues.load());
    // g = w (dw - sum_i w_i dw_i), on the choices.
    core.tensor_tensor(in(g), in(w), AluOp::kMultiply, in(dw));
    core.tensor_reduce(in(dot), AluOp::kAdd, in(g));
    core.tensor_scalar(in(g), in(dw), AluOp::kSubtract, in(dot));
    core.tensor_tensor(in(g), in(g), AluOp::kMultiply, in(w));
    // Onto the experts: spread[n, e, j] = g[n, j] where ids[n, j] == e, summed over j.
    one_hot(core, in(spread), in(experts), in(ids), OneHotLayout::kExpertMajor, Engine::kGpSimd);
    core.tensor_tensor(in(spread), in(spread), AluOp::kMultiply, in(g).split(0, k).broadcast(0, E),
                       Engine::kGpSimd);
    core.tensor_reduce(in(grad), AluOp::kAdd, in(spread), 1);
    core.tensor_tensor(in(d), in(d), AluOp::kAdd, in(grad));
    core.dma_copy(dlogits.rows(first, r), in(d), queues.store());
  }
}

}  // namespace switchyard::backend::neuron
