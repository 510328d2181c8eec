#include "backend/neuron/group_by_expert_kernel.h"

#include <array>
#include <string>
#include <vector>

#include "backend/neuron/dma_queues.h"
#include "backend/neuron/routing_tiles.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

// Fields of an assignment in assignment order, side by side in the int32 tile the stores read.
constexpr int64_t kGroupedPosition = 0, kRow = 1, kAssignment = 2, kFields = 3;
// The fields restacked by TensorE (the assignment number is an iota there).
constexpr int64_t kMovedFields = 2;

// out[p, f] = 1 where p + offset < f, else 0 (out already holds ones).
void strictly_before(NeuronCore& core, const View& out, int64_t offset) {
  // Keeps out where f - p - offset - 1 >= 0.
  core.affine_select(out, out, static_cast<float>(-offset - 1), -1.0f, {1.0f},
                     AluOp::kIsGreaterEqual, 0.0f);
}

// Tiles and constants of the whole program.
struct GroupingTiles {
  View experts;      // [P, E] expert iota
  View ones_column;  // [P, 1]
  View ones;         // [P, P]: ones^T R sums R's partitions onto every row
  View before;       // [P, P]: [n' < n]
  std::vector<View> experts_before;  // per chunk of 128 experts c: [128, E], [c * 128 + p < e]
  View running;      // [P, E] R: the offsets in row 0, then the counts of the tiles done
  View placement;    // [P, k, k * P]: [p == n * k + j], choice j of row n onto partition p
};

// One row tile's tiles (two sets alternate).
struct RowTileTiles {
  View ids;        // [P, k] int32
  View by_expert;  // [P, E, k] one-hot
  View counts;     // [P, E] C
  View prefix;     // [P, E] X, in SBUF
  View by_choice;  // [P, k, E] one-hot, then the picked X values
  View base;       // [P, k] X at each choice
  View same;       // [P, k, k] choices of a row that are the same expert, then those before j
  View earlier;    // [P, k]
  View fields;     // [P, k, kMovedFields] fp32: grouped position and row of each choice
  View stacked;    // [k * P, kFields] int32: the fields of assignment first * k + p at partition p
};

RowTileTiles row_tile_tiles(TilePool& pool, int64_t P, int64_t E, int64_t k, int i) {
  auto name = [&](const char* what) { return "group." + std::string(what) + std::to_string(i); };
  RowTileTiles t;
  t.ids = pool.sbuf(P, {k}, DType::kI32, name("ids"));
  t.by_expert = pool.sbuf(P, {E, k}, DType::kF32, name("by_expert"));
  t.counts = pool.sbuf(P, {E}, DType::kF32, name("counts"));
  t.prefix = pool.sbuf(P, {E}, DType::kF32, name("prefix"));
  t.by_choice = pool.sbuf(P, {k, E}, DType::kF32, name("by_choice"));
  t.base = pool.sbuf(P, {k}, DType::kF32, name("base"));
  t.same = pool.sbuf(P, {k, k}, DType::kF32, name("same"));
  t.earlier = pool.sbuf(P, {k}, DType::kF32, name("earlier"));
  t.fields = pool.sbuf(P, {k, kMovedFields}, DType::kF32, name("fields"));
  t.stacked = pool.sbuf(k * P, {kFields}, DType::kI32, name("stacked"));
  return t;
}

GroupingTiles grouping_tiles(NeuronCore& core, TilePool& pool, int64_t P, int64_t E, int64_t k) {
  GroupingTiles g;
  g.experts = pool.sbuf(P, {E}, DType::kF32, "group.experts");
  expert_iota(core, g.experts);
  g.ones_column = pool.sbuf(P, {1}, DType::kF32, "group.ones_column");
  core.memset(g.ones_column, 1.0f, Engine::kGpSimd);
  g.ones = pool.sbuf(P, {P}, DType::kF32, "group.ones");
  core.memset(g.ones, 1.0f, Engine::kGpSimd);
  g.before = pool.sbuf(P, {P}, DType::kF32, "group.before");
  core.memset(g.before, 1.0f, Engine::kGpSimd);
  strictly_before(core, g.before, 0);
  for (int64_t c = 0; c * kPartitions < E; ++c) {
    const int64_t experts = std::min(kPartitions, E - c * kPartitions);
    const View t = pool.sbuf(experts, {E}, DType::kF32, fmt::format("group.experts_before{}", c));
    core.memset(t, 1.0f, Engine::kGpSimd);
    strictly_before(core, t, c * kPartitions);
    g.experts_before.push_back(t);
  }
  g.running = pool.sbuf(P, {E}, DType::kF32, "group.running");
  core.memset(g.running, 0.0f);
  g.placement = pool.sbuf(P, {k, k * P}, DType::kF32, "group.placement");
  core.memset(g.placement, 1.0f, Engine::kGpSimd);
  // Keeps p - k n - j == 0.
  core.affine_select(g.placement, g.placement, 0.0f, static_cast<float>(-k), {-1.0f, 1.0f},
                     AluOp::kIsEqual, 0.0f);
  return g;
}

// C[n, e]: how many of row n's choices are expert e.
void count_choices(NeuronCore& core, const GroupingTiles& g, const RowTileTiles& t, int64_t r) {
  one_hot(core, t.by_expert.rows(0, r), g.experts.rows(0, r), t.ids.rows(0, r),
          OneHotLayout::kExpertMajor, Engine::kGpSimd);
  core.tensor_reduce(t.counts.rows(0, r), AluOp::kAdd, t.by_expert.rows(0, r), 1);
}

// base[n, j] = X[n, ids[n, j]], from X in PSUM and the choice-major one-hot tile.
void pick_prefix(NeuronCore& core, const RowTileTiles& s, const View& x, int64_t r) {
  auto in = [&](const View& v) { return v.rows(0, r); };
  const int64_t E = s.prefix.free_size(), k = s.ids.free_size();
  core.activation(in(s.prefix), Activation::kIdentity, x);
  core.tensor_tensor(in(s.by_choice), in(s.by_choice), AluOp::kMultiply,
                     in(s.prefix).split(0, E).broadcast(0, k));
  core.tensor_reduce(in(s.base), AluOp::kAdd, in(s.by_choice), 1);
}

// earlier[n, j] = how many of choices 0..j-1 of row n are the same expert as choice j.
void count_earlier_choices(NeuronCore& core, const RowTileTiles& s, int64_t r) {
  const int64_t k = s.ids.free_size();
  const View ids = s.ids.rows(0, r), same = s.same.rows(0, r);
  core.tensor_tensor(same, ids.split(0, 1).broadcast(1, k), AluOp::kIsEqual,
                     ids.split(0, k).broadcast(0, k), Engine::kGpSimd);
  // Keeps same[n, j, j'] where j - j' - 1 >= 0.
  core.affine_select(same, same, -1.0f, 0.0f, {1.0f, -1.0f}, AluOp::kIsGreaterEqual, 0.0f);
  core.tensor_reduce(s.earlier.rows(0, r), AluOp::kAdd, same, 1);
}

}  // namespace

void group_by_expert(NeuronCore& core, const View& order, const View& rows, const View& position,
                     const View& offsets, const View& expert_ids, int64_t experts) {
  const char* kName = "group_by_expert";
  const int64_t E = experts, N = expert_ids.partitions(), k = expert_ids.free_size(), A = N * k;
  require(E >= 1 && E <= kMaxExperts, "{}: experts must be in [1, {}], got {}", kName, kMaxExperts,
          E);
  require(N >= 1 && k >= 1 && k <= kPartitions && k * E <= kMaxOneHotCells && A < kMaxAssignments,
          "{}: expert_ids {} must hold 1 to {} choices per row, with k * E <= {} and fewer than "
          "{} assignments",
          kName, expert_ids.describe(), kPartitions, kMaxOneHotCells, kMaxAssignments);
  require_packed(kName, "expert_ids", expert_ids, N, k, true);
  require_packed(kName, "position", position, A, 1, true);
  require_packed(kName, "order", order, A, 1, true);
  require_packed(kName, "rows", rows, A, 1, true);
  require_packed(kName, "offsets", offsets, 1, E + 1, true);

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.5);
  // floor(128 / k) rows a tile: their k choices each restack onto at most 128 partitions.
  const RowTiles tiles{N, kPartitions / k};
  const int64_t P = tiles.partitions(), T = tiles.count();
  const int64_t chunks = ceil_div(E, kPartitions);
  auto chunk_experts = [&](int64_t c) { return std::min(kPartitions, E - c * kPartitions); };
  const GroupingTiles g = grouping_tiles(core, pool, P, E, k);
  const std::array<RowTileTiles, 2> sets = {row_tile_tiles(pool, P, E, k, 0),
                                            row_tile_tiles(pool, P, E, k, 1)};
  auto load_ids = [&](int64_t t) {
    core.dma_copy(sets[t % 2].ids.rows(0, tiles.rows(t)),
                  expert_ids.rows(tiles.first(t), tiles.rows(t)), queues.load());
  };

  // 1. counts[e] over all rows, per chunk of 128 experts (a column each), then the offsets.
  std::vector<View> counts;
  for (int64_t c = 0; c < chunks; ++c)
    counts.push_back(pool.psum(chunk_experts(c), {1}, DType::kF32, fmt::format("group.counts{}", c)));
  load_ids(0);
  for (int64_t t = 0; t < T; ++t) {
    if (t + 1 < T) load_ids(t + 1);
    const RowTileTiles& s = sets[t % 2];
    const int64_t r = tiles.rows(t);
    count_choices(core, g, s, r);
    for (int64_t c = 0; c < chunks; ++c) {
      core.matmul(counts[c], s.counts.rows(0, r).cols(c * kPartitions, chunk_experts(c)),
                  g.ones_column.rows(0, r), t == 0, t == T - 1);
    }
  }
  const View count_columns = pool.sbuf(kPartitions, {chunks}, DType::kF32, "group.count_columns");
  const View offsets_psum = pool.psum(1, {E}, DType::kF32, "group.offsets_psum");
  for (int64_t c = 0; c < chunks; ++c) {
    const View column = count_columns.rows(0, chunk_experts(c)).cols(c, 1);
    core.tensor_copy(column, counts[c]);
    core.matmul(offsets_psum, column, g.experts_before[c], c == 0, c == chunks - 1);
  }
  const View offsets_tile = pool.sbuf(1, {E + 1}, DType::kI32, "group.offsets");
  core.tensor_copy(offsets_tile.cols(0, E), offsets_psum);
  core.memset(offsets_tile.cols(E, 1), static_cast<float>(A));
  core.dma_copy(offsets, offsets_tile, queues.store());
  core.tensor_copy(g.running.rows(0, 1), offsets_psum);

  // 2. Per row tile: X = offsets + earlier rows' choices, then each choice's grouped position.
  // With one or two row tiles, their ids and counts are still in the two sets.
  const bool reload = T > 2;
  const View prefix_psum = pool.psum(P, {E}, DType::kF32, "group.prefix_psum");
  const View stacked_psum = pool.psum(k * P, {kMovedFields}, DType::kF32, "group.stacked_psum");
  if (reload) load_ids(0);
  for (int64_t t = 0; t < T; ++t) {
    if (reload && t + 1 < T) load_ids(t + 1);
    const RowTileTiles& s = sets[t % 2];
    const int64_t r = tiles.rows(t), first = tiles.first(t);
    auto in = [&](const View& v) { return v.rows(0, r); };
    if (reload) count_choices(core, g, s, r);
    // What does not need X first, so that it runs while the prefix sums wait for their inputs.
    const View f = in(s.fields);
    core.iota(f.slice(1, kRow, 1), static_cast<float>(first), 1.0f, {0.0f, 0.0f});
    count_earlier_choices(core, s, r);
    one_hot(core, in(s.by_choice), in(g.experts), in(s.ids), OneHotLayout::kChoiceMajor,
            Engine::kGpSimd);
    const View x = in(prefix_psum);
    core.matmul(x, g.before.rows(0, r).cols(0, r), in(s.counts), true, false);
    core.matmul(x, g.ones.cols(0, r), g.running, false, true);
    core.tensor_tensor(in(g.running), in(g.running), AluOp::kAdd, in(s.counts), Engine::kGpSimd);
    pick_prefix(core, s, x, r);
    // Grouped position g = base + earlier and row n of each choice, restacked by TensorE onto
    // partition n * k + j (assignment first * k + p), where the assignment is an iota.
    core.tensor_tensor(f.slice(1, kGroupedPosition, 1), in(s.base), AluOp::kAdd, in(s.earlier));
    const View moved = stacked_psum.rows(0, k * r);
    for (int64_t j = 0; j < k; ++j) {
      core.matmul(moved, g.placement.rows(0, r).slice(0, j, 1).cols(0, k * r), f.slice(0, j, 1),
                  j == 0, j == k - 1);
    }
    const View stacked = s.stacked.rows(0, k * r);
    core.tensor_copy(stacked.cols(0, kMovedFields), moved);
    core.iota(stacked.cols(kAssignment, 1), static_cast<float>(first * k), 1.0f, {0.0f});
    const View grouped = stacked.cols(kGroupedPosition, 1);
    core.dma_copy(position.rows(first * k, k * r), grouped, queues.store());
    core.dma_scatter(order, stacked.cols(kAssignment, 1), grouped, false, queues.store());
    core.dma_scatter(rows, stacked.cols(kRow, 1), grouped, false, queues.store());
  }
}

}  // namespace switchyard::backend::neuron
