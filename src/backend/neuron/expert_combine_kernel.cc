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
  require(s.N >= 1 && s.C >= 1 && s.k >= 1 && s.k <= kPartitions,
          "{}: needs rows, columns and 1 to {} choices per row; got {} {} and weights {}", kernel,
          kPartitions, rows_name, rows.describe(), weights.describe());
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

void expert_combine_backward(NeuronCore& core, const View& dexpert_out, const View& dweights,
                             const View& dout, const View& expert_out, const View& weights,
                             const View& position, DType compute) {
  const char* kName = "expert_combine_backward";
  require_compute(kName, compute);
  const CombineShape s =
      check_combine(kName, dout, "dout", expert_out, "expert_out", weights, position);
  require_packed(kName, "dexpert_out", dexpert_out, s.N * s.k, s.C, false);
  require_packed(kName, "dweights", dweights, s.N, s.k, false);
  const int64_t k = s.k, R = s.tiles.partitions(), P = k * R;

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.25);
  auto load_queue = [&] { return queues.load(); };
  // An fp32 dexpert_out keeps the scaled rows in fp32.
  const DType scaled_dtype = dexpert_out.dtype() == DType::kF32 ? DType::kF32 : compute;
  const StackedColumns columns = stacked_columns(pool, P, 0);
  const View dw = pool.sbuf(P, {1}, DType::kF32, "combine.dweights");
  const View dot = pool.sbuf(P, {1}, DType::kF32, "combine.dot");
  std::array<View, 2> gathered, d, products, scaled;
  for (int i = 0; i < 2; ++i) {
    const std::string tag = std::to_string(i);
    gathered[i] = pool.sbuf(P, {s.width}, compute, "combine.gathered" + tag);
    d[i] = pool.sbuf(P, {s.width}, compute, "combine.dout" + tag);
    products[i] = pool.sbuf(P, {s.width}, compute, "combine.products" + tag);
    scaled[i] = pool.sbuf(P, {s.width}, scaled_dtype, "combine.scaled" + tag);
  }
  int64_t step = 0;
  for (int64_t t = 0; t < s.tiles.count(); ++t) {
    const int64_t r = s.tiles.rows(t), first = s.tiles.first(t), p = k * r;
    const View index = columns.index.rows(0, p), weight = columns.weight.rows(0, p);
    copy_stacked(core, index, position, first, r, false, load_queue);
    copy_stacked(core, weight, weights, first, r, false, load_queue);
    copy_stacked(core, dw.rows(0, p), dweights, first, r, false, load_queue);
    for (int64_t piece = 0; piece < s.pieces; ++piece, ++step) {
      const int64_t c0 = piece * s.width, cols = s.piece_cols(piece);
      auto part = [&](const std::array<View, 2>& v) { return v[step % 2].rows(0, p).cols(0, cols); };
      const View x = part(gathered), dt = part(d), prod = part(products), y = part(scaled);
      split_gather(core, x, expert_out.cols(c0, cols), index, queues.loads(),
                   [&] { return queues.load(); });
      for (int64_t j = 0; j < k; ++j)
        core.dma_copy(dt.rows(j * r, r), dout.rows(first, r).cols(c0, cols), queues.load());
      // dweights += dout . x, piece by piece.
      core.tensor_tensor(prod, dt, AluOp::kMultiply, x);
      core.tensor_reduce(dot.rows(0, p), AluOp::kAdd, prod);
      core.tensor_tensor(dw.rows(0, p), dw.rows(0, p), AluOp::kAdd, dot.rows(0, p),
                         Engine::kGpSimd);
      // dexpert_out[position] += w * dout.
      core.activation(y, Activation::kIdentity, dt, weight);
      core.dma_scatter(dexpert_out.cols(c0, cols), y, index, /*accumulate=*/true, queues.store());
    }
    copy_stacked(core, dw.rows(0, p), dweights, first, r, true, [&] { return queues.store(); });
  }
}

}  // namespace switchyard::backend::neuron
