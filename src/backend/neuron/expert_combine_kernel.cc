#include "backend/neuron/expert_combine_kernel.h"

#include <array>
#include <map>
#include <string>
#include <vector>

#include "backend/neuron/dma_queues.h"
#include "backend/neuron/fill_kernel.h"
#include "backend/neuron/routing_tiles.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

// Columns of a gathered piece: a decode step's 2880 columns go in three pieces, so that the
// products of one piece run while the next is gathered and the last is stored.
constexpr int64_t kMaxPieceCols = 1024;
constexpr int kPsumBuffers = 4;
constexpr int kGatherBuffers = 3;  // a decode step's three pieces gathered at once

// Sizes of a combine: N rows of C columns, k choices each, tiles of floor(128 / k) rows.
struct CombineShape {
  int64_t N = 0, k = 0, C = 0;
  RowTiles tiles;
  int64_t pieces = 0, width = 0;  // column pieces of at most kMaxPieceCols
  int64_t piece_cols(int64_t p) const { return std::min(width, C - p * width); }
};

CombineShape check_combine(const char* kernel, const View& rows, const char* rows_name,
                           const View& grouped, const char* grouped_name, const View& weights,
                           const View& position) {
  CombineShape s;
  s.N = rows.partitions();
  s.C = rows.free_size();
  s.k = weights.free_size();
  require(s.N >= 1 && s.C >= 1 && s.C <= kMaxCombineColumns && s.k >= 1 && s.k <= kPartitions,
          "{}: needs rows, 1 to {} columns and 1 to {} choices per row; got {} {} and weights {}",
          kernel, kMaxCombineColumns, kPartitions, rows_name, rows.describe(),
          weights.describe());
  require_packed(kernel, rows_name, rows, s.N, s.C, false);
  require_packed(kernel, grouped_name, grouped, s.N * s.k, s.C, false);
  require_packed(kernel, "weights", weights, s.N, s.k, false);
  require_packed(kernel, "position", position, s.N, s.k, true);
  s.tiles = RowTiles{s.N, kPartitions / s.k};
  s.pieces = ceil_div(s.C, kMaxPieceCols);
  s.width = ceil_div(s.C, s.pieces);
  return s;
}

// Column j of rows [first, first + r) of `t` ([N, k]) onto partitions j * r .. j * r + r - 1 of
// `column` (to_hbm: the other way).
template <typename NextQueue>
void copy_stacked(NeuronCore& core, const View& column, const View& t, int64_t first, int64_t r,
                  bool to_hbm, NextQueue&& next_queue) {
  for (int64_t j = 0; j < t.free_size(); ++j) {
    const View part = column.rows(j * r, r), hbm = t.rows(first, r).cols(j, 1);
    to_hbm ? core.dma_copy(hbm, part, next_queue()) : core.dma_copy(part, hbm, next_queue());
  }
}

// out [k * r, r] = 1 at (j * r + n, n) for every j, else 0: k identities stacked on partitions.
void identity_stack(NeuronCore& core, TilePool& pool, const View& out, int64_t k, int64_t r) {
  const View offset = pool.sbuf(k * r, {r}, DType::kF32, "combine.stack_offset");
  const View hit = pool.sbuf(k * r, {r}, DType::kF32, "combine.stack_hit");
  core.iota(offset, 0.0f, 1.0f, {-1.0f});  // p - n
  core.tensor_scalar(out, offset, AluOp::kIsEqual, 0.0f);
  for (int64_t j = 1; j < k; ++j) {
    core.tensor_scalar(hit, offset, AluOp::kIsEqual, static_cast<float>(j * r));
    core.tensor_tensor(out, out, AluOp::kAdd, hit);
  }
}

// The stacked identities for each row count a tile can have (the full one and the last).
std::map<int64_t, View> identity_stacks(NeuronCore& core, TilePool& pool, const CombineShape& s,
                                        DType compute) {
  std::map<int64_t, View> stacks;
  for (int64_t t : {int64_t{0}, s.tiles.count() - 1}) {
    const int64_t r = s.tiles.rows(t);
    if (stacks.count(r)) continue;
    const View stack = pool.sbuf(s.k * r, {r}, compute, "combine.stack" + std::to_string(r));
    identity_stack(core, pool, stack, s.k, r);
    stacks.emplace(r, stack);
  }
  return stacks;
}

// The per-row-tile columns: gather indices and weights, stacked.
struct StackedColumns {
  View index;    // [k * r, 1] int32
  View weight;   // [k * r, 1] fp32
};

StackedColumns stacked_columns(TilePool& pool, int64_t partitions, int i) {
  return {pool.sbuf(partitions, {1}, DType::kI32, "combine.index" + std::to_string(i)),
          pool.sbuf(partitions, {1}, DType::kF32, "combine.weight" + std::to_string(i))};
}

// One (row tile, column piece) step of a program.
struct Step {
  int64_t tile = 0, piece = 0;
};

std::vector<Step> steps_of(const CombineShape& s) {
  std::vector<Step> steps;
  for (int64_t t = 0; t < s.tiles.count(); ++t)
    for (int64_t p = 0; p < s.pieces; ++p) steps.push_back({t, p});
  return steps;
}

}  // namespace

void expert_combine_forward(NeuronCore& core, const View& out, const View& expert_out,
                            const View& weights, const View& position, DType compute) {
  const char* kName = "expert_combine_forward";
  require_compute(kName, compute);
  const CombineShape s =
      check_combine(kName, out, "out", expert_out, "expert_out", weights, position);
  const int64_t k = s.k, R = s.tiles.partitions(), P = k * R;

  KernelScope scope(core, kName);
  TilePool pool(core);
  // Loads and stores take turns over every queue, in the order the pieces need them.
  const int queues = core.config().dma_queues;
  DmaSpreader spread(core, 0, queues);
  auto next_queue = [&] { return spread.next_queue(); };
  const std::map<int64_t, View> stacks = identity_stacks(core, pool, s, compute);
  std::array<StackedColumns, 2> columns;
  std::array<View, 2> mixing, combined;
  std::array<View, kGatherBuffers> gathered;
  for (int i = 0; i < kGatherBuffers; ++i)
    gathered[i] = pool.sbuf(P, {s.width}, compute, "combine.gathered" + std::to_string(i));
  for (int i = 0; i < 2; ++i) {
    columns[i] = stacked_columns(pool, P, i);
    mixing[i] = pool.sbuf(P, {R}, compute, "combine.mixing" + std::to_string(i));  // W
    // A whole row tile: stores of column pieces would write overlapping HBM ranges (row by row)
    // and so run one after another; the tile goes out at once, cut by rows.
    combined[i] = pool.sbuf(R, {s.C}, compute, "combine.out" + std::to_string(i));
  }
  std::vector<View> psum;
  for (int i = 0; i < kPsumBuffers; ++i)
    psum.push_back(pool.psum(R, {kPsumBankFloats}, DType::kF32, "combine.psum" + std::to_string(i)));

  // W = the stacked identities scaled by each partition's weight.
  auto prepare_tile = [&](int64_t t) {
    const int64_t r = s.tiles.rows(t), first = s.tiles.first(t);
    const StackedColumns& c = columns[t % 2];
    copy_stacked(core, c.index.rows(0, k * r), position, first, r, false, next_queue);
    copy_stacked(core, c.weight.rows(0, k * r), weights, first, r, false, next_queue);
    core.tensor_scalar(mixing[t % 2].rows(0, k * r).cols(0, r), stacks.at(r), AluOp::kMultiply,
                       c.weight.rows(0, k * r), AluOp::kBypass, 0.0f, Engine::kGpSimd);
  };
  const std::vector<Step> steps = steps_of(s);
  auto gather = [&](size_t i) {
    const Step& step = steps[i];
    const int64_t r = s.tiles.rows(step.tile), cols = s.piece_cols(step.piece);
    split_gather(core, gathered[i % kGatherBuffers].rows(0, k * r).cols(0, cols),
                 expert_out.cols(step.piece * s.width, cols),
                 columns[step.tile % 2].index.rows(0, k * r), queues, next_queue);
  };
  // Gathers run up to kGatherBuffers steps ahead of the products, and at most into the next row
  // tile (the per-tile columns and W have two sets).
  size_t gathered_steps = 0;
  auto gather_ahead = [&](size_t current) {
    const size_t until = std::min(current + kGatherBuffers, steps.size());
    for (; gathered_steps < until; ++gathered_steps) {
      const Step& next = steps[gathered_steps];
      if (next.tile > steps[current].tile + 1) break;
      if (gathered_steps == 0 || steps[gathered_steps - 1].tile != next.tile)
        prepare_tile(next.tile);
      gather(gathered_steps);
    }
  };
  int64_t chunk_count = 0;
  for (size_t i = 0; i < steps.size(); ++i) {
    gather_ahead(i);
    const Step& step = steps[i];
    const int64_t r = s.tiles.rows(step.tile), cols = s.piece_cols(step.piece);
    const View w = mixing[step.tile % 2].rows(0, k * r).cols(0, r);
    const View x = gathered[i % kGatherBuffers].rows(0, k * r);
    const View y = combined[step.tile % 2].rows(0, r).cols(step.piece * s.width, cols);
    // One matmul per PSUM bank of columns; the evacuations alternate ScalarE and VectorE.
    for (int64_t c0 = 0; c0 < cols; c0 += kPsumBankFloats, ++chunk_count) {
      const int64_t n = std::min(kPsumBankFloats, cols - c0);
      const View acc = psum[chunk_count % kPsumBuffers].rows(0, r).cols(0, n);
      core.matmul(acc, w, x.cols(c0, n), true, true);
      if (chunk_count % 2 == 0) {
        core.activation(y.cols(c0, n), Activation::kIdentity, acc);
      } else {
        core.tensor_copy(y.cols(c0, n), acc);
      }
    }
    if (step.piece + 1 == s.pieces) {
      split_copy(core, out.rows(s.tiles.first(step.tile), r), combined[step.tile % 2].rows(0, r),
                 queues, next_queue);
    }
  }
}

namespace {

// An HBM tensor of the program's own, released when the program ends (also when it throws).
class ScratchTensor {
 public:
  ScratchTensor(NeuronCore& core, const std::vector<int64_t>& shape, const std::string& name)
      : core_(core), view_(core.hbm_alloc(shape, DType::kF32, name)) {}
  ~ScratchTensor() {
    try {
      core_.release(view_);
    } catch (const std::exception&) {
      // Only after the program threw; its error is the one that matters.
    }
  }
  ScratchTensor(const ScratchTensor&) = delete;
  ScratchTensor& operator=(const ScratchTensor&) = delete;
  const View& view() const { return view_; }

 private:
  NeuronCore& core_;
  View view_;
};

// Fields of the grouped rows' table: the row a grouped row came from, and its weight.
constexpr int64_t kSourceRow = 0, kSourceWeight = 1, kSourceFields = 2;

// 1. sources[position[n * k + j]] = (n, weights[n, j]): row tiles of 128 rows, one scatter per
// choice of 128 one-element rows.
void invert_positions(NeuronCore& core, TilePool& pool, const View& sources, const View& weights,
                      const View& position, DmaQueues& queues) {
  const int64_t N = weights.partitions(), k = weights.free_size();
  const RowTiles tiles{N};
  const int64_t P = tiles.partitions();
  const View index = pool.sbuf(P, {k}, DType::kI32, "combine.position");
  const View fields = pool.sbuf(P, {k, kSourceFields}, DType::kF32, "combine.source_fields");
  for (int64_t t = 0; t < tiles.count(); ++t) {
    const int64_t r = tiles.rows(t), first = tiles.first(t);
    const View f = fields.rows(0, r);
    core.dma_copy(index.rows(0, r), position.rows(first, r), queues.load());
    core.dma_copy(f.slice(1, kSourceWeight, 1), weights.rows(first, r), queues.load());
    core.iota(f.slice(1, kSourceRow, 1), static_cast<float>(first), 1.0f, {0.0f, 0.0f});
    for (int64_t j = 0; j < k; ++j) {
      core.dma_scatter(sources, f.slice(0, j, 1), index.rows(0, r).cols(j, 1), false,
                       queues.store());
    }
  }
}

// 3. dweights[n, j] += dots[position[n * k + j]]: row tiles of 128 rows, a gather per choice.
void add_dots(NeuronCore& core, TilePool& pool, const View& dweights, const View& dots,
              const View& position, DmaQueues& queues) {
  const int64_t N = dweights.partitions(), k = dweights.free_size();
  const RowTiles tiles{N};
  const int64_t P = tiles.partitions();
  const View index = pool.sbuf(P, {k}, DType::kI32, "combine.dot_position");
  const View dw = pool.sbuf(P, {k}, DType::kF32, "combine.dweights");
  const View gathered = pool.sbuf(P, {k}, DType::kF32, "combine.gathered_dots");
  for (int64_t t = 0; t < tiles.count(); ++t) {
    const int64_t r = tiles.rows(t), first = tiles.first(t);
    core.dma_copy(index.rows(0, r), position.rows(first, r), queues.load());
    core.dma_copy(dw.rows(0, r), dweights.rows(first, r), queues.load());
    for (int64_t j = 0; j < k; ++j) {
      core.dma_gather(gathered.rows(0, r).cols(j, 1), dots, index.rows(0, r).cols(j, 1),
                      queues.load());
    }
    core.tensor_tensor(dw.rows(0, r), dw.rows(0, r), AluOp::kAdd, gathered.rows(0, r));
    core.dma_copy(dweights.rows(first, r), dw.rows(0, r), queues.store());
  }
}

// The tiles of one (grouped tile, column piece) step of the second pass.
struct PieceTiles {
  View d;         // [128, width] dout rows gathered by source row
  View x;         // [128, width] expert_out rows
  View products;  // [128, width] d x, then w d
};

PieceTiles piece_tiles(TilePool& pool, int64_t width, DType compute, int i) {
  auto tile = [&](const char* name) {
    return pool.sbuf(kPartitions, {width}, compute, "combine." + std::string(name) + std::to_string(i));
  };
  return {tile("dout"), tile("x"), tile("products")};
}

// The tiles of one grouped tile of the second pass (two sets alternate).
struct GroupedTiles {
  View source;      // [128, kSourceFields] fp32
  View source_row;  // [128, 1] int32
  View dx;          // [128, C] whole dexpert_out rows: their column pieces' stores would overlap
                    // in HBM (row by row) and wait for each other, and for the next piece's load
  View dots;        // [128, pieces]
};

GroupedTiles grouped_tiles(TilePool& pool, int64_t C, int64_t pieces, DType dx_dtype, int i) {
  auto tile = [&](const char* name, int64_t cols, DType dtype) {
    return pool.sbuf(kPartitions, {cols}, dtype, "combine." + std::string(name) + std::to_string(i));
  };
  return {tile("source", kSourceFields, DType::kF32), tile("source_row", 1, DType::kI32),
          tile("dexpert_out", C, dx_dtype), tile("dots", pieces, DType::kF32)};
}

}  // namespace

void expert_combine_backward(NeuronCore& core, const View& dexpert_out, const View& dweights,
                             const View& dout, const View& expert_out, const View& weights,
                             const View& position, DType compute) {
  const char* kName = "expert_combine_backward";
  require_compute(kName, compute);
  const CombineShape s =
      check_combine(kName, dout, "dout", expert_out, "expert_out", weights, position);
  const int64_t A = s.N * s.k;
  require_packed(kName, "dexpert_out", dexpert_out, A, s.C, false);
  require_packed(kName, "dweights", dweights, s.N, s.k, false);
  require(A < kMaxAssignments, "{}: {} assignments, the program numbers fewer than {}", kName, A,
          kMaxAssignments);

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.25);
  const ScratchTensor sources(core, {A, kSourceFields}, "combine.sources");
  const ScratchTensor dots(core, {A, 1}, "combine.dots");
  invert_positions(core, pool, sources.view(), weights, position, queues);

  // 2. Per tile of 128 grouped rows g, from the row n and weight w it came from:
  //    dexpert_out[g] += w dout[n] and dots[g] = dout[n] . expert_out[g], a column piece a step.
  //    Loads run ahead of the products: a grouped tile's sources and dexpert_out rows at its first
  //    step, each step's expert_out rows and then the gather of dout rows by source row.
  const RowTiles grouped{A};
  // An fp32 dexpert_out keeps its sums in fp32.
  const DType dx_dtype = dexpert_out.dtype() == DType::kF32 ? DType::kF32 : compute;
  std::array<PieceTiles, kGatherBuffers> pieces;
  for (int i = 0; i < kGatherBuffers; ++i) pieces[i] = piece_tiles(pool, s.width, compute, i);
  const std::array<GroupedTiles, 2> tiles = {grouped_tiles(pool, s.C, s.pieces, dx_dtype, 0),
                                             grouped_tiles(pool, s.C, s.pieces, dx_dtype, 1)};
  const View dot_sum = pool.sbuf(kPartitions, {1}, DType::kF32, "combine.dot_sum");
  std::vector<Step> steps;
  for (int64_t t = 0; t < grouped.count(); ++t)
    for (int64_t piece = 0; piece < s.pieces; ++piece) steps.push_back({t, piece});
  auto load_queue = [&] { return queues.load(); };
  auto load_tile = [&](int64_t t) {
    const GroupedTiles& g = tiles[t % 2];
    const int64_t q = grouped.rows(t), g0 = grouped.first(t);
    core.dma_copy(g.source.rows(0, q), sources.view().rows(g0, q), load_queue());
    core.tensor_copy(g.source_row.rows(0, q), g.source.rows(0, q).cols(kSourceRow, 1));
    split_copy(core, g.dx.rows(0, q), dexpert_out.rows(g0, q), queues.loads(), load_queue);
  };
  auto load_step = [&](size_t i) {
    const Step& step = steps[i];
    const PieceTiles& b = pieces[i % kGatherBuffers];
    const int64_t q = grouped.rows(step.tile), g0 = grouped.first(step.tile);
    const int64_t c0 = step.piece * s.width, cols = s.piece_cols(step.piece);
    auto part = [&](const View& v) { return v.rows(0, q).cols(0, cols); };
    split_copy(core, part(b.x), expert_out.rows(g0, q).cols(c0, cols), queues.loads(), load_queue);
    split_gather(core, part(b.d), dout.cols(c0, cols), tiles[step.tile % 2].source_row.rows(0, q),
                 queues.loads(), load_queue);
  };
  // Steps load up to kGatherBuffers - 1 ahead, and at most into the next grouped tile.
  size_t loaded_steps = 0;
  auto load_ahead = [&](size_t current) {
    const size_t until = std::min(current + kGatherBuffers - 1, steps.size() - 1);
    for (; loaded_steps <= until; ++loaded_steps) {
      const Step& next = steps[loaded_steps];
      if (next.tile > steps[current].tile + 1) break;
      if (next.piece == 0) load_tile(next.tile);
      load_step(loaded_steps);
    }
  };
  for (size_t i = 0; i < steps.size(); ++i) {
    load_ahead(i);
    const Step& step = steps[i];
    const PieceTiles& b = pieces[i % kGatherBuffers];
    const GroupedTiles& g = tiles[step.tile % 2];
    const int64_t q = grouped.rows(step.tile), g0 = grouped.first(step.tile);
    const int64_t c0 = step.piece * s.width, cols = s.piece_cols(step.piece);
    auto part = [&](const View& v) { return v.rows(0, q).cols(0, cols); };
    const View dx = g.dx.rows(0, q).cols(c0, cols);
    core.tensor_tensor(part(b.products), part(b.d), AluOp::kMultiply, part(b.x));
    core.tensor_reduce(g.dots.rows(0, q).cols(step.piece, 1), AluOp::kAdd, part(b.products));
    core.activation(part(b.products), Activation::kIdentity, part(b.d),
                    g.source.rows(0, q).cols(kSourceWeight, 1));
    core.tensor_tensor(dx, dx, AluOp::kAdd, part(b.products), Engine::kGpSimd);
    if (step.piece + 1 == s.pieces) {
      auto store_queue = [&] { return queues.store(); };
      split_copy(core, dexpert_out.rows(g0, q), g.dx.rows(0, q), queues.stores(), store_queue);
      core.tensor_reduce(dot_sum.rows(0, q), AluOp::kAdd, g.dots.rows(0, q));
      core.dma_copy(dots.view().rows(g0, q), dot_sum.rows(0, q), store_queue());
    }
  }
  add_dots(core, pool, dweights, dots.view(), position, queues);
}

}  // namespace switchyard::backend::neuron
