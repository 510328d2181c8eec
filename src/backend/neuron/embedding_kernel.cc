#include "backend/neuron/embedding_kernel.h"

#include <algorithm>
#include <array>
#include <string>

#include "backend/neuron/dma_queues.h"
#include "core/error.h"

namespace switchyard::backend::neuron {

namespace {

using ::switchyard::is_float;

// Rows of one launch: the id tiles are [128, N / 128] int32, 4 bytes per row per partition.
constexpr int64_t kMaxRows = int64_t{1} << 22;

// An HBM float tensor [rows, cols] with contiguous rows.
void require_matrix(const char* kernel, const char* name, const View& v, int64_t rows,
                    int64_t cols) {
  require(v.memory() == Memory::kHbm && is_float(v.dtype()) && v.free_dims() == 1 &&
              v.free_dim(0).stride == 1 && v.partitions() == rows && v.free_size() == cols,
          "{}: {} must be an HBM float tensor [{}, {}] with contiguous rows, got {}", kernel, name,
          rows, cols, v.describe());
}

// An HBM table [rows >= 1, cols] with contiguous rows.
void require_table(const char* kernel, const char* name, const View& v, int64_t cols) {
  require(v.partitions() >= 1, "{}: {} has no rows", kernel, name);
  require_matrix(kernel, name, v, v.partitions(), cols);
}

void require_ids(const char* kernel, const char* name, const View& ids, int64_t n) {
  const bool contiguous = ids.free_dims() == 1 && ids.free_dim(0).stride == 1 &&
                          (ids.partitions() == 1 || ids.partition_stride() == ids.free_size());
  require(ids.memory() == Memory::kHbm && ids.dtype() == DType::kI32 && contiguous &&
              ids.elements() == n,
          "{}: {} must be an HBM int32 tensor of N = {} contiguous ids, got {}", kernel, name, n,
          ids.describe());
}

// Checks the row count and, together, the optional position operands; returns whether they are
// given.
bool check_rows(const char* kernel, int64_t n, const View& position_ids,
                const View& position_table, const char* table_name) {
  require(n >= 1 && n <= kMaxRows, "{}: N = {} rows must be in [1, {}]", kernel, n, kMaxRows);
  require(present(position_ids) == present(position_table),
          "{}: position_ids and {} come together (both or neither)", kernel, table_name);
  return present(position_table);
}

// All ids into an int32 [128, tiles] tile: row t * 128 + p at partition p, column t, so each
// tile's gather or scatter indexes with one column. Two DMAs at most.
View load_ids(NeuronCore& core, TilePool& pool, const View& ids, int64_t n, int queue,
              const std::string& name) {
  const int64_t tiles = ceil_div(n, kPartitions);
  const View tile = pool.sbuf(std::min(n, kPartitions), {tiles}, DType::kI32, name);
  const int64_t full = n / kPartitions;
  const int64_t rest = n % kPartitions;
  if (full > 0)
    core.dma_copy(tile.cols(0, full), ids.pattern(0, Dim{kPartitions, 1}, {Dim{full, kPartitions}}),
                  queue);
  if (rest > 0)
    core.dma_copy(tile.rows(0, rest).cols(full, 1),
                  ids.pattern(full * kPartitions, Dim{rest, 1}, {Dim{1, 1}}), queue);
  return tile;
}

}  // namespace

void embedding_forward(NeuronCore& core, const View& out, const View& ids, const View& table,
                       const View& position_ids, const View& position_table, DType compute) {
  const char* kName = "embedding_forward";
  require_compute(kName, compute);
  const int64_t n = out.partitions();
  const bool positions = check_rows(kName, n, position_ids, position_table, "position_table");
  const int64_t C = out.free_size();
  require_matrix(kName, "out", out, n, C);
  require_ids(kName, "ids", ids, n);
  require_table(kName, "table", table, C);
  if (positions) {
    require_ids(kName, "position_ids", position_ids, n);
    require_table(kName, "position_table", position_table, C);
  }

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.5);  // a gather per store
  const int64_t P = std::min(n, kPartitions);
  const int64_t tiles = ceil_div(n, kPartitions);
  auto rows_of = [&](int64_t t) { return std::min(kPartitions, n - t * kPartitions); };
  const View row_ids = load_ids(core, pool, ids, n, queues.load(), "embedding.ids");
  const View pos_ids =
      positions ? load_ids(core, pool, position_ids, n, queues.load(), "embedding.position_ids")
                : View();

  std::array<View, 2> emb, pos;
  for (int i = 0; i < 2; ++i) {
    emb[i] = pool.sbuf(P, {C}, compute, "embedding.rows" + std::to_string(i));
    if (positions) pos[i] = pool.sbuf(P, {C}, compute, "embedding.positions" + std::to_string(i));
  }
  auto gather = [&](const View& dst, const View& from, const View& tile_ids) {
    split_gather(core, dst, from, tile_ids, queues.loads(), [&] { return queues.load(); });
  };
  auto gather_tile = [&](int64_t t) {
    const int64_t r = rows_of(t);
    gather(emb[t % 2].rows(0, r), table, row_ids.rows(0, r).cols(t, 1));
    if (positions) gather(pos[t % 2].rows(0, r), position_table, pos_ids.rows(0, r).cols(t, 1));
  };
  gather_tile(0);
  for (int64_t t = 0; t < tiles; ++t) {
    if (t + 1 < tiles) gather_tile(t + 1);
    const int64_t r = rows_of(t);
    const View e = emb[t % 2].rows(0, r);
    if (positions) {
      core.tensor_tensor(e, e, AluOp::kAdd, pos[t % 2].rows(0, r),
                         t % 2 == 0 ? Engine::kVector : Engine::kGpSimd);
    }
    split_copy(core, out.rows(t * kPartitions, r), e, queues.stores(),
               [&] { return queues.store(); });
  }
}

void embedding_backward(NeuronCore& core, const View& dtable, const View& dposition_table,
                        const View& dout, const View& ids, const View& position_ids,
                        DType compute) {
  const char* kName = "embedding_backward";
  require_compute(kName, compute);
  const int64_t n = dout.partitions();
  const bool positions = check_rows(kName, n, position_ids, dposition_table, "dposition_table");
  const int64_t C = dout.free_size();
  require_matrix(kName, "dout", dout, n, C);
  require_ids(kName, "ids", ids, n);
  require_table(kName, "dtable", dtable, C);
  if (positions) {
    require_ids(kName, "position_ids", position_ids, n);
    require_table(kName, "dposition_table", dposition_table, C);
  }

  KernelScope scope(core, kName);
  TilePool pool(core);
  DmaQueues queues(core, 0.5);  // a scatter per load
  const int64_t P = std::min(n, kPartitions);
  const int64_t tiles = ceil_div(n, kPartitions);
  auto rows_of = [&](int64_t t) { return std::min(kPartitions, n - t * kPartitions); };
  const View row_ids = load_ids(core, pool, ids, n, queues.load(), "embedding.ids");
  const View pos_ids =
      positions ? load_ids(core, pool, position_ids, n, queues.load(), "embedding.position_ids")
                : View();

  // Each row tile of dout is scattered onto its ids' rows with accumulation; the DMA adds rows in
  // partition order, so an id repeated within a tile adds up. The scatters into one table run one
  // after another whatever queues they are on (each reads and writes the table); those into the
  // two tables overlap.
  std::array<View, 2> d;
  for (int i = 0; i < 2; ++i)
    d[i] = pool.sbuf(P, {C}, compute, "embedding.dout" + std::to_string(i));
  auto load_tile = [&](int64_t t) {
    split_copy(core, d[t % 2].rows(0, rows_of(t)), dout.rows(t * kPartitions, rows_of(t)),
               queues.loads(), [&] { return queues.load(); });
  };
  load_tile(0);
  for (int64_t t = 0; t < tiles; ++t) {
    if (t + 1 < tiles) load_tile(t + 1);
    const int64_t r = rows_of(t);
    const View rows = d[t % 2].rows(0, r);
    core.dma_scatter(dtable, rows, row_ids.rows(0, r).cols(t, 1), /*accumulate=*/true,
                     queues.store());
    if (positions) {
      core.dma_scatter(dposition_table, rows, pos_ids.rows(0, r).cols(t, 1), /*accumulate=*/true,
                       queues.store());
    }
  }
}

}  // namespace switchyard::backend::neuron
