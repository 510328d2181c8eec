#include "backend/neuron/rope_kernel.h"

#include <algorithm>
#include <array>
#include <string>
#include <vector>

#include "backend/neuron/dma_queues.h"
#include "backend/neuron/fill_kernel.h"
#include "backend/neuron/routing_tiles.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

constexpr int64_t kMaxFree = 4096;  // elements of x per partition
// Tiles of up to this many rows move a row per DMA (two rounds over 16 queues at most).
constexpr int64_t kMaxRowMajorRows = 32;

// How rows and heads map onto partitions (see the header).
struct RopeLayout {
  int64_t groups = 1;           // G
  int64_t heads_per_group = 1;  // H / G
  int64_t width = 0;            // elements per partition: heads_per_group * head_dim
  RowTiles tiles;               // min(N, 128 / G) rows a tile
  bool row_major = false;       // see transfers()
};

std::vector<int64_t> divisors(int64_t n) {
  std::vector<int64_t> all;
  for (int64_t d = 1; d <= n; ++d)
    if (n % d == 0) all.push_back(d);
  return all;
}

// The fewest groups that keep a partition within kMaxFree elements (0: none do).
int64_t fewest_groups(int64_t H, int64_t D) {
  for (int64_t g : divisors(H))
    if ((H / g) * D <= kMaxFree) return g;
  return 0;
}

RopeLayout rope_layout(int64_t N, int64_t H, int64_t D) {
  int64_t G = fewest_groups(H, D);
  for (int64_t g : divisors(H))
    if (g > G && g * N <= kPartitions) G = g;
  require(G >= 1 && G <= kPartitions,
          "rope: {} heads of {} dimensions cannot be split into at most 128 groups of at most {} "
          "elements",
          H, D, kMaxFree);
  RopeLayout layout;
  layout.groups = G;
  layout.heads_per_group = H / G;
  layout.width = (H / G) * D;
  layout.tiles = RowTiles{N, std::max<int64_t>(1, std::min(N, kPartitions / G))};
  layout.row_major = G > 1 && layout.tiles.partitions() <= kMaxRowMajorRows;
  return layout;
}

// One DMA's worth of x in a row tile: partitions [partition, partition + count) and the elements
// they hold.
struct Transfer {
  int64_t partition = 0, count = 0;
  View x;
};

// A tile of r rows takes G * r partitions, group-major (partition g * r + i: one DMA per group)
// or row-major (partition i * G + g: one DMA per row, the row's groups consecutive in it). The
// simulator orders DMA writes by the bounding box of their HBM bytes, and every group's rows span
// the others', so the stores of a group-major tile run one after another: for the few rows of a
// decode step a DMA per row, all at once, is faster.
std::vector<Transfer> transfers(const RopeLayout& layout, const View& x, int64_t first,
                                int64_t r) {
  const int64_t G = layout.groups, W = layout.width;
  std::vector<Transfer> all;
  if (!layout.row_major) {
    for (int64_t g = 0; g < G; ++g) all.push_back({g * r, r, x.rows(first, r).cols(g * W, W)});
  } else {
    for (int64_t i = 0; i < r; ++i)
      all.push_back({i * G, G, x.rows(first + i, 1).pattern(0, Dim{G, W}, {Dim{W, 1}})});
  }
  return all;
}

// Row-major tiles take each row's position on G consecutive partitions: the r positions come in
// by one DMA and TensorE repeats them, against expand[i, p] = 1 where p / G == i.
struct PositionExpansion {
  View expand;     // [R, G * R] fp32
  View rows;       // [R, 1] int32, then fp32
  View rows_f32;   // [R, 1]
  View repeated;   // PSUM [G * R, 1]
};

PositionExpansion position_expansion(NeuronCore& core, TilePool& pool, int64_t R, int64_t G) {
  PositionExpansion e;
  e.expand = pool.sbuf(R, {G * R}, DType::kF32, "rope.expand");
  core.memset(e.expand, 1.0f, Engine::kGpSimd);
  // Keeps p - G i >= 0 and G i + G - 1 - p >= 0.
  core.affine_select(e.expand, e.expand, 0.0f, static_cast<float>(-G), {1.0f},
                     AluOp::kIsGreaterEqual, 0.0f);
  core.affine_select(e.expand, e.expand, static_cast<float>(G - 1), static_cast<float>(G), {-1.0f},
                     AluOp::kIsGreaterEqual, 0.0f);
  e.rows = pool.sbuf(R, {1}, DType::kI32, "rope.row_positions");
  e.rows_f32 = pool.sbuf(R, {1}, DType::kF32, "rope.row_positions_f32");
  e.repeated = pool.psum(G * R, {1}, DType::kF32, "rope.repeated_positions");
  return e;
}

struct RopeTiles {
  View index;       // [P, 1] int32: each partition's position
  View cos, sin;    // [P, D / 2]
  View x, y;        // [P, width]
  View t1, t2;      // [P, width / 2]
};

RopeTiles rope_tiles(TilePool& pool, int64_t P, int64_t half, int64_t width, DType compute,
                     int i) {
  auto tile = [&](const char* name, int64_t cols, DType dtype) {
    return pool.sbuf(P, {cols}, dtype, "rope." + std::string(name) + std::to_string(i));
  };
  return {tile("index", 1, DType::kI32), tile("cos", half, compute), tile("sin", half, compute),
          tile("x", width, compute),      tile("y", width, compute),  tile("t1", width / 2, compute),
          tile("t2", width / 2, compute)};
}

// The rotation of every head on `partitions` partitions (see the header).
void rotate(NeuronCore& core, const RopeTiles& t, int64_t partitions, int64_t heads,
            int64_t head_dim, bool transpose) {
  const int64_t half = head_dim / 2;
  auto in = [&](const View& v) { return v.rows(0, partitions); };
  auto lo = [&](const View& v) { return in(v).split(0, head_dim).slice(1, 0, half); };
  auto hi = [&](const View& v) { return in(v).split(0, head_dim).slice(1, half, half); };
  auto per_head = [&](const View& table) { return in(table).split(0, half).broadcast(0, heads); };
  const View c = per_head(t.cos), s = per_head(t.sin);
  const View t1 = in(t.t1).split(0, half), t2 = in(t.t2).split(0, half);
  const AluOp lo_op = transpose ? AluOp::kAdd : AluOp::kSubtract;
  const AluOp hi_op = transpose ? AluOp::kSubtract : AluOp::kAdd;
  // GpSimd forms the sin products into tiles of their own while VectorE forms the cos products in
  // y; VectorE alone writes y, whose halves interleave (two engines writing it would wait for
  // each other: dependencies are tracked by bounding box).
  core.tensor_tensor(t1, hi(t.x), AluOp::kMultiply, s, Engine::kGpSimd);
  core.tensor_tensor(t2, lo(t.x), AluOp::kMultiply, s, Engine::kGpSimd);
  core.tensor_tensor(lo(t.y), lo(t.x), AluOp::kMultiply, c);
  core.tensor_tensor(hi(t.y), hi(t.x), AluOp::kMultiply, c);
  core.tensor_tensor(lo(t.y), lo(t.y), lo_op, t1);
  core.tensor_tensor(hi(t.y), hi(t.y), hi_op, t2);
}

}  // namespace

bool rope_supported(int64_t heads, int64_t head_dim) {
  if (heads < 1 || head_dim < 2 || head_dim % 2 != 0 || head_dim > kMaxFree) return false;
  const int64_t G = fewest_groups(heads, head_dim);
  return G >= 1 && G <= kPartitions;
}

void rope(NeuronCore& core, const View& x, const View& cos, const View& sin,
          const View& positions, int64_t heads, int64_t head_dim, bool transpose, DType compute) {
  const char* kName = "rope";
  require_compute(kName, compute);
  const int64_t N = x.partitions(), half = head_dim / 2;
  require(heads >= 1 && head_dim >= 2 && head_dim % 2 == 0 && head_dim <= kMaxFree,
          "{}: needs heads >= 1 and an even head_dim in [2, {}], got {} heads of {}", kName,
          kMaxFree, heads, head_dim);
  require(N >= 1, "{}: x has no rows", kName);
  require_rows(kName, "x", x, N, heads * head_dim);
  require(cos.partitions() >= 1, "{}: the cos table has no positions", kName);
  require_dense_matrix(kName, "cos", cos, cos.partitions(), half);
  require_dense_matrix(kName, "sin", sin, cos.partitions(), half);
  require_packed(kName, "positions", positions, N, 1, true);

  KernelScope scope(core, kName);
  TilePool pool(core);
  // Every queue takes loads and stores alike: a decode step's loads all come before its stores.
  DmaSpreader spread(core, 0, core.config().dma_queues);
  const int queues = core.config().dma_queues;
  auto next_queue = [&] { return spread.next_queue(); };
  const RopeLayout layout = rope_layout(N, heads, head_dim);
  const RowTiles& tiles = layout.tiles;
  const int64_t P = layout.groups * tiles.partitions();
  const std::array<RopeTiles, 2> sets = {rope_tiles(pool, P, half, layout.width, compute, 0),
                                         rope_tiles(pool, P, half, layout.width, compute, 1)};
  PositionExpansion expansion;
  if (layout.row_major) expansion = position_expansion(core, pool, tiles.partitions(), layout.groups);
  // Each partition's position into s.index: positions are ids below 2^24, exact in fp32.
  auto load_positions = [&](const RopeTiles& s, int64_t first, int64_t r) {
    const int64_t G = layout.groups;
    if (!layout.row_major) {
      for (int64_t g = 0; g < G; ++g)
        core.dma_copy(s.index.rows(g * r, r), positions.rows(first, r), next_queue());
      return;
    }
    const PositionExpansion& e = expansion;
    core.dma_copy(e.rows.rows(0, r), positions.rows(first, r), next_queue());
    core.tensor_copy(e.rows_f32.rows(0, r), e.rows.rows(0, r));
    core.matmul(e.repeated.rows(0, G * r), e.expand.rows(0, r).cols(0, G * r), e.rows_f32.rows(0, r),
                true, true);
    core.tensor_copy(s.index.rows(0, G * r), e.repeated.rows(0, G * r));
  };
  // The positions first, so that the table gathers they feed start early, and the gathers after
  // the x loads, so that no load waits in a queue behind a gather waiting for its positions.
  auto load = [&](int64_t t) {
    const RopeTiles& s = sets[t % 2];
    const int64_t r = tiles.rows(t), p = layout.groups * r;
    load_positions(s, tiles.first(t), r);
    for (const Transfer& m : transfers(layout, x, tiles.first(t), r))
      split_copy(core, s.x.rows(m.partition, m.count), m.x, queues, next_queue);
    core.dma_gather(s.cos.rows(0, p), cos, s.index.rows(0, p), next_queue());
    core.dma_gather(s.sin.rows(0, p), sin, s.index.rows(0, p), next_queue());
  };
  load(0);
  for (int64_t t = 0; t < tiles.count(); ++t) {
    if (t + 1 < tiles.count()) load(t + 1);
    const RopeTiles& s = sets[t % 2];
    rotate(core, s, layout.groups * tiles.rows(t), layout.heads_per_group, head_dim, transpose);
    for (const Transfer& m : transfers(layout, x, tiles.first(t), tiles.rows(t)))
      split_copy(core, m.x, s.y.rows(m.partition, m.count), queues, next_queue);
  }
}

}  // namespace switchyard::backend::neuron
